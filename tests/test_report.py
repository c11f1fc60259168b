"""report.py: the metrics of a run's report against counts done by hand, and the range-test
picture drawn, kept or removed as the LRs were found or given."""
import pytest
import torch

import lr_finder
import report

# ----------------------------------------------------------------------------------------------
# Confusion matrix and per-class accuracy, against counts done by hand

def test_confusion_matrix_hand_computed():
    # pairs (true, pred): (0,0) (0,1) (1,1) (2,0)
    labels, preds = torch.tensor([0, 0, 1, 2]), torch.tensor([0, 1, 1, 0])
    cm = report.confusion_matrix(labels, preds, num_classes=3)
    assert cm.dtype == torch.int64
    assert cm.tolist() == [[1, 1, 0],
                           [0, 1, 0],
                           [1, 0, 0]]
    assert report.per_class_accuracy(cm) == [50.0, 100.0, 0.0]


def test_confusion_matrix_accepts_lists_and_keeps_total():
    labels = [3, 3, 9, 0, 5]
    cm = report.confusion_matrix(labels, [3, 5, 9, 0, 3])
    assert cm.shape == (10, 10) and int(cm.sum()) == 5 and int(cm.trace()) == 3
    assert cm[3, 5] == 1 and cm[5, 3] == 1


def test_per_class_accuracy_empty_class_is_none():
    cm = report.confusion_matrix([0, 0, 1], [0, 1, 1], num_classes=3)    # class 2 has no images
    acc = report.per_class_accuracy(cm)
    assert acc == [50.0, 100.0, None]


def test_confusion_matrix_rejects_bad_input():
    with pytest.raises(ValueError):
        report.confusion_matrix([0, 1], [0])
    with pytest.raises(ValueError):
        report.confusion_matrix([0, 10], [0, 1], num_classes=10)



def test_the_range_test_picture_is_drawn_for_found_lrs_and_removed_for_given_ones(tmp_path):
    curve = lr_finder.RangeTestResult(lrs=[0.01, 0.1, 1.0], losses=[2.3, 1.9, 2.5], smoothed=[2.3, 2.1, 2.2],
                                      lr_max=0.05, lr_min=0.0025, stop_reason="completed", rule="r", note="")
    report.draw_range_test(curve.to_dict(), tmp_path)
    assert (tmp_path / "lr_range_test.png").stat().st_size > 5_000
    report.draw_range_test(curve.to_dict(), tmp_path, draw=False)
    assert not (tmp_path / "lr_range_test.png").exists()          # not kept beside other LRs' run
    (tmp_path / "lr_range_test.png").write_bytes(b"an earlier run's")
    report.draw_range_test(None, tmp_path)
    assert not (tmp_path / "lr_range_test.png").exists()
