"""report.py: the metrics against counts done by hand; the report of a run (README.md, its
pictures, images.pt) against the run's record; data named for what it is in every picture."""
import json
import os
import re

import pytest
import torch

import data
import lr_finder
import plots
import report
import train
import utils
from custom_resnet import CLASSES, CustomResNet

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


# ----------------------------------------------------------------------------------------------
# The report of a run: README.md, the pictures, images.pt

QUICK = dict(synthetic=True, synthetic_train=512, synthetic_test=200, width=8, batch_size=64, eval_batch_size=100,
             precision="fp32", device="cpu", progress=False, epochs=2, lr_test_iters=8)
DRAWN = ("plot_curves", "plot_lr_schedule", "plot_confusion", "plot_misclassified", "plot_gradcam")


def drawing_recorder(mp, titles, calls):
    """Wrap every picture function so that each call and each figure's titles are kept."""
    import lr_finder

    def wrap(module, name):
        real = getattr(module, name)

        def recording(*args, **kwargs):
            fig = real(*args, **kwargs)
            calls.setdefault(name, []).append((args, kwargs))
            titles[name] = " ".join([fig._suptitle.get_text() if fig._suptitle else ""]
                                    + [ax.get_title() for ax in fig.axes] + [ax.get_ylabel() for ax in fig.axes]
                                    + [t.get_text() for ax in fig.axes for t in ax.texts])
            return fig
        mp.setattr(module, name, recording)
    for name in DRAWN:
        wrap(plots, name)
    wrap(lr_finder, "plot_range_test")


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    """A quick synthetic run with the report's defaults, every picture's titles recorded."""
    out = tmp_path_factory.mktemp("quick")
    titles, calls = {}, {}
    with pytest.MonkeyPatch.context() as mp:
        drawing_recorder(mp, titles, calls)
        record = train.main(**QUICK, out_dir=str(out))
    return record, out, titles, calls


def test_the_report_links_every_picture_relatively_and_each_exists(quick):
    record, out, _, _ = quick
    text = (out / "README.md").read_text()
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert sorted(links) == sorted(["lr_range_test.png", "lr_schedule.png", "curves.png", "confusion.png",
                                    "misclassified.png", "gradcam.png"])
    assert all(not os.path.isabs(link) and (out / link).stat().st_size > 5_000 for link in links)
    assert json.loads((out / "metrics.json").read_text()) == record            # the record it was written from


def test_the_reports_numbers_are_the_records(quick):
    record, out, _, _ = quick
    text = (out / "README.md").read_text()
    h = record["history"]
    rows = re.findall(r"^\| (\d+) \| ([\d.e-]+) \| ([\d.]+) \| ([\d.]+)% \| ([\d.]+) \| ([\d.]+)% \|$", text, re.M)
    assert [int(r[0]) for r in rows] == [e["epoch"] for e in h] == [1, 2]
    for r, e in zip(rows, h):
        assert (float(r[1]), float(r[2]), float(r[3]), float(r[4]), float(r[5])) == pytest.approx(
            (e["lr"], e["train_loss"], e["train_acc"], e["test_loss"], e["test_acc"]), rel=5e-4, abs=5e-3)
    assert f"**{record['test_accuracy']:.2f}%** ({record['test_correct']}/200)" in text
    assert f"| LRMIN, LRMAX | {record['lr_min']:.4g}, {record['lr_max']:.4g} (range test) |" in text
    assert f"CustomResNet(width=8), {sum(p.numel() for p in CustomResNet(width=8).parameters()):,} parameters" in text
    for name, acc in record["per_class_accuracy"].items():
        assert f"| {name} | {acc:.2f}% |" in text
    shown = re.findall(r"^\| (\d+) \| (\d+) \| (\w+) \| (\w+) \| ([\d.]+)% \|$", text, re.M)
    assert [(int(i), m, p) for _, i, m, p, _ in shown] == [(m["index"], m["label"], m["predicted"])
                                                           for m in record["misclassified"]]
    assert record["command"] in text and "python train.py --epochs 2 --batch-size 64" in record["command"]
    assert f"{record['timings']['train_seconds']:.1f} s training" in text


def test_a_synthetic_run_says_so_in_the_report_every_picture_and_the_last_line(quick, capsys, tmp_path):
    record, out, titles, _ = quick
    text = (out / "README.md").read_text()
    assert text.startswith(f"# Custom ResNet on synthetic data: {record['test_accuracy']:.2f}% synthetic test accuracy")
    assert "> **Synthetic data.**" in text and "says nothing about accuracy on CIFAR-10" in text
    assert set(titles) == set(DRAWN) | {"plot_range_test"}
    for name, words in titles.items():
        assert "synthetic" in words.lower(), (name, words)
    train.main(**{**QUICK, "plots": False, "epochs": 1}, out_dir=str(tmp_path))
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("synthetic test accuracy") and "on synthetic data, which says nothing about CIFAR-10" in last


def test_the_default_gallery_is_ten_mistakes_each_with_grad_cam_of_both_classes_at_5x5_or_more(quick):
    record, out, _, calls = quick
    assert len(record["misclassified"]) == 10 < record["misclassified_total"]
    assert record["gradcam"]["layer"] == train.Config().gradcam_layer and min(record["gradcam"]["map_size"]) >= 5
    (images, cams_pred, cams_true, labels, preds, _, _), kwargs = calls["plot_gradcam"][0]
    assert len(images) == len(cams_pred) == len(cams_true) == 10 and kwargs["max_images"] == 10
    assert [m["label"] for m in record["misclassified"]] == [CLASSES[int(c)] for c in labels]
    assert [m["predicted"] for m in record["misclassified"]] == [CLASSES[int(c)] for c in preds]
    (_, _, _, confs, _, _), kwargs = calls["plot_misclassified"][0]
    assert kwargs["max_images"] == 10 and torch.all(confs[:-1] >= confs[1:])
    assert [round(m["confidence"], 6) for m in record["misclassified"]] == [round(float(c), 6) for c in confs[:10]]


def test_images_pt_keeps_the_mistakes_and_one_example_per_class_for_the_web_app(quick):
    record, out, _, _ = quick
    kept = torch.load(out / "images.pt", weights_only=True)
    wrong, examples = kept["misclassified"], kept["examples"]
    assert wrong["index"][:10].tolist() == [m["index"] for m in record["misclassified"]]
    assert len(wrong["index"]) == min(100, record["misclassified_total"]) and wrong["images"].dtype == torch.uint8
    data = train.load_data(train.Config.from_keywords(QUICK))
    assert torch.equal(wrong["images"], data.test_images[wrong["index"]])
    assert torch.equal(wrong["labels"], data.test_labels[wrong["index"]]) and bool((wrong["predicted"] != wrong["labels"]).all())
    assert sorted(examples["labels"].tolist()) == list(range(10)) and kept["classes"] == list(data.classes)
    assert torch.equal(examples["images"], data.test_images[examples["index"]])


def test_the_count_of_misclassified_images_is_a_setting(tmp_path):
    r = train.main(**{**QUICK, "epochs": 1, "plots": False}, misclassified=3, out_dir=str(tmp_path))
    text = (tmp_path / "README.md").read_text()
    assert len(r["misclassified"]) == 3 and "## 3 misclassified synthetic test images" in text
    assert "![" not in text                                  # --no-plots: no picture to link
    with pytest.raises(train.utils.UsageError, match="misclassified must lie in 0..100"):
        train.Config.from_keywords({"misclassified": 101})


def test_a_grad_cam_layer_under_5x5_is_drawn_after_one_warning_naming_the_rule(tmp_path, capsys):
    r = train.main(**{**QUICK, "epochs": 1}, gradcam_layer="layer3", out_dir=str(tmp_path))
    out = capsys.readouterr().out
    warnings = [line for line in out.splitlines() if line.startswith("warning:")]
    assert warnings == ["warning: Grad-CAM at layer3 gives a 4x4 map; the course's graders refuse maps from a "
                        "channel under 5x5 pixels: use --gradcam-layer layer2 (8x8) or layer1 (16x16) for an assignment"]
    assert r["gradcam"] == {"layer": "layer3", "map_size": [4, 4]}
    assert "taken at `layer3`, whose map is 4x4 pixels" in (tmp_path / "README.md").read_text()
    train.main(**{**QUICK, "epochs": 1, "plots": False}, out_dir=str(tmp_path / "default"))
    assert "warning:" not in capsys.readouterr().out


def test_a_validation_split_is_named_so_in_the_log_the_record_every_picture_and_the_report(tmp_path, capsys, monkeypatch):
    """On cifar10_jpeg.py's folder (test_batch labelled "validation split")."""
    from cifar_files import write_cifar_folder
    from test_data import label_test_batch
    write_cifar_folder(tmp_path, n_per_batch=40)
    label_test_batch(tmp_path, "validation split")
    titles, calls = {}, {}
    drawing_recorder(monkeypatch, titles, calls)
    from_files = {k: v for k, v in QUICK.items() if not k.startswith("synthetic")}
    r = train.main(**{**from_files, "epochs": 1}, data_dir=str(tmp_path), download=False, subset=128,
                   lr_min=0.02, lr_max=0.2, out_dir=str(tmp_path / "out"))
    out = capsys.readouterr().out
    assert r["data"]["eval_split"] == "validation" and r["data"]["test_images"] == 40
    assert "Validation set: Average loss" in out and "Test set" not in out
    assert "40 validation images" in out and "validation accuracy" in out
    for name in ("plot_curves", "plot_misclassified", "plot_gradcam", "plot_confusion"):
        assert calls[name][0][1]["split"] == "validation", name
    assert all("synthetic" not in words.lower() and "test set" not in words.lower() for words in titles.values())
    text = (tmp_path / "out" / "README.md").read_text()
    assert "% validation accuracy" in text and "labelled a **validation split** (not the CIFAR-10 test set)" in text


def test_a_synthetic_run_with_given_lrs_says_synthetic_on_its_schedule_too(tmp_path, monkeypatch):
    titles, calls = {}, {}
    drawing_recorder(monkeypatch, titles, calls)
    train.main(**{**QUICK, "epochs": 1, "lr_min": 0.02, "lr_max": 0.2}, out_dir=str(tmp_path))
    assert "synthetic" in titles["plot_lr_schedule"].lower() and "plot_range_test" not in titles


def test_a_report_with_no_mistake_to_show_says_why(quick, tmp_path):
    record, _, _, _ = quick
    none_made = {**record, "misclassified": [], "misclassified_total": 0}
    text = report.markdown(none_made, str(tmp_path))
    assert "## 0 misclassified synthetic test images" in text and "every held-out image was classified correctly" in text
    assert "| # | image |" not in text and "Grad-CAM" not in text.split("## 0 misclassified")[1]
    asked_none = {**record, "misclassified": []}
    assert f"None shown (`--misclassified 0`) of the {record['misclassified_total']:,} mistakes" in report.markdown(
        asked_none, str(tmp_path))


def test_the_headline_accuracy_is_the_last_epochs_the_weights_model_pt_holds_not_the_best(tmp_path):
    """A run whose last epoch is its worst: its last step turns the classifier around (each class
    scored by the negated weights, so the least likely class wins). The run's accuracy, in the
    record, the report, the last line and a Space, is that of the weights model.pt holds."""
    import predict
    from app import export
    from conftest import Watch
    cfg = {**QUICK, "epochs": 3, "lr_min": 0.02, "lr_max": 0.2, "plots": False}
    steps = cfg["epochs"] * (cfg["synthetic_train"] // cfg["batch_size"])

    def at_the_last_step(optimizer):
        at_the_last_step.steps += 1
        if at_the_last_step.steps == steps:
            fc, = [p for g in optimizer.param_groups for p in g["params"] if p.dim() == 2 and len(p) == 10]
            with torch.no_grad():
                fc.neg_()
    at_the_last_step.steps = 0
    with Watch(keep_inputs=False) as watch:
        watch.after_step.append(at_the_last_step)
        record = train.main(**cfg, out_dir=str(tmp_path / "run"))
    accuracies = [e["test_acc"] for e in record["history"]]
    assert accuracies[-1] < max(accuracies) - 10                       # the run is as meant: the last is worst
    assert record["test_accuracy"] == accuracies[-1] and record["test_correct"] == record["history"][-1]["test_correct"]
    assert f"{accuracies[-1]:.2f}% synthetic test accuracy" in (tmp_path / "run" / "README.md").read_text().splitlines()[0]
    d = data.synthetic_cifar10(cfg["synthetic_train"], cfg["synthetic_test"], seed=0)
    model = predict.load_model(tmp_path / "run" / "model.pt")
    out = predict.logits(model, d.test_images, utils.pick_runtime("cpu", "fp32"))
    assert int((out.argmax(1) == d.test_labels).sum()) == record["test_correct"]      # model.pt's own accuracy
    assert export.export(str(tmp_path / "run"), str(tmp_path / "space"))["accuracy"] == accuracies[-1]
