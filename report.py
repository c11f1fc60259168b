"""What a finished run shows: its per-class accuracy, its confusion matrix, its pictures.

The pictures (curves, LR schedule, range test, confusion, misclassified images, Grad-CAM) go into
the run's folder."""
import os

import torch

import gradcam
import lr_finder
import plots
from custom_resnet import normalize


# ----------------------------------------------------------------------------------------------
# The metrics

def confusion_matrix(labels, preds, num_classes=10) -> torch.Tensor:
    """int64 (C, C): entry [t, p] counts the images of true class t predicted as class p.

    One bincount over t * C + p: each (true, predicted) pair gets its own bin.
    """
    labels = torch.as_tensor(labels).detach().cpu().long().flatten()
    preds = torch.as_tensor(preds).detach().cpu().long().flatten()
    if labels.shape != preds.shape:
        raise ValueError(f"{labels.numel()} labels but {preds.numel()} predictions")
    for name, t in (("labels", labels), ("preds", preds)):
        if t.numel() and (t.min() < 0 or t.max() >= num_classes):
            raise ValueError(f"{name} must lie in 0..{num_classes - 1}, "
                             f"found {int(t.min())}..{int(t.max())}")
    counts = torch.bincount(labels * num_classes + preds, minlength=num_classes * num_classes)
    return counts.view(num_classes, num_classes)


def per_class_accuracy(confusion) -> list:
    """Percent of each true class predicted correctly (diagonal / row sum), one float per class.

    A class with no images gets None (not NaN), so the list can go into a JSON file as it is.
    """
    confusion = torch.as_tensor(confusion).detach().cpu()
    totals = confusion.sum(1).tolist()
    correct = confusion.diagonal().tolist()
    return [100.0 * c / n if n else None for c, n in zip(correct, totals)]


def add_class_accuracy(record, data, preds) -> torch.Tensor:
    """record["per_class_accuracy"] from the final predictions (N,); returns the confusion matrix."""
    cm = confusion_matrix(data.test_labels, preds.cpu(), num_classes=10)
    record["per_class_accuracy"] = dict(zip(data.classes, per_class_accuracy(cm)))
    return cm


# ----------------------------------------------------------------------------------------------
# The pictures

def draw_range_test(range_test, out_dir, draw=True):
    """lr_range_test.png of a range test's result (its dict, or None when the LRs were given).
    Drawn as soon as the test is done: worth a look while training runs. An earlier run's
    picture is removed when this run has none: it would not describe these LRs."""
    path = os.path.join(out_dir, "lr_range_test.png")
    if range_test is not None and draw:
        lr_finder.plot_range_test(lr_finder.RangeTestResult(**range_test), path)
    elif os.path.exists(path):
        os.remove(path)


def draw(record, model, data, final_eval, cm, layer, out_dir, log=print):
    """The pictures of docs/SPEC.md section 3, in out_dir, from the run's record, the model it
    evaluated last, its final evaluation (`final_eval`: preds and confidences of every held-out
    image) and its confusion matrix. Grad-CAM is taken at `layer`."""
    preds, confs = final_eval["preds"].cpu(), final_eval["confidences"].float().cpu()
    wrong = (preds != data.test_labels).nonzero().flatten()
    wrong = wrong[confs[wrong].argsort(descending=True, stable=True)]     # most confident mistakes first
    range_png = os.path.join(out_dir, "lr_range_test.png")
    if record["lr_range_test"] and not os.path.exists(range_png):          # resumed into a new folder
        lr_finder.plot_range_test(lr_finder.RangeTestResult(**record["lr_range_test"]), range_png)
    split = data.eval_split                                            # "test" or "validation"
    plots.plot_curves(record["history"], os.path.join(out_dir, "curves.png"), split=split)
    plots.plot_lr_schedule(record["lr_schedule"], record["steps_per_epoch"],
                           os.path.join(out_dir, "lr_schedule.png"), lr_max=record["lr_max"])
    plots.plot_confusion(cm, data.classes, os.path.join(out_dir, "confusion.png"), split=split)
    plots.plot_misclassified(data.test_images[wrong], data.test_labels[wrong], preds[wrong], confs[wrong],
                             data.classes, os.path.join(out_dir, "misclassified.png"), split=split)
    few = wrong[:10]
    cams_pred = cams_true = torch.zeros(0, 32, 32)
    title = layer
    if len(few):                                                      # else: a picture that says so
        device = next(model.parameters()).device
        x = normalize(data.test_images[few].to(device))                  # (10, 3, 32, 32)
        with gradcam.GradCAM(model, layer) as cam:
            cams_pred = cam(x, preds[few].to(device)).cpu()
            cams_true = cam(x, data.test_labels[few].to(device)).cpu()
            h, w = cam.activations.shape[-2:]
            title = f"{layer}, {h}x{w} map"
    plots.plot_gradcam(data.test_images[few], cams_pred, cams_true, data.test_labels[few], preds[few],
                       data.classes, os.path.join(out_dir, "gradcam.png"), layer=title, split=split)
    log(f"plots saved in {out_dir}: " + " ".join(sorted(f for f in os.listdir(out_dir) if f.endswith(".png"))))

