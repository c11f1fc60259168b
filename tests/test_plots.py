"""The plots: each function draws on small fake data, saves a PNG that is not blank, and returns
the matplotlib Figure it drew, whose artists are checked for content: the data of every series,
the pixels of every image (Grad-CAM maps upsampled to the picture's size), the titles and the
messages. The confusion matrix is checked against counts done by hand.

Run: python -m pytest tests/test_plots.py -q   (CPU only, a few seconds)
"""
import math
import os
import subprocess
import sys

import pytest
import torch

import plots
import report

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLASSES = ("airplane", "automobile", "bird", "cat", "deer",
           "dog", "frog", "horse", "ship", "truck")
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)      # as in data.py
CIFAR10_STD = (0.2470, 0.2435, 0.2616)


def assert_png_drawn(fig, path):
    """fig is a Figure, and path holds a PNG with more than one colour in it."""
    from matplotlib.figure import Figure
    from matplotlib.image import imread
    assert isinstance(fig, Figure)
    assert os.path.getsize(path) > 0
    pixels = imread(path)                                   # (H, W, 3 or 4) floats in 0..1
    assert pixels.ndim == 3 and pixels.shape[0] > 50 and pixels.shape[1] > 50
    assert pixels.std() > 0.02                              # not a blank page
    colours = pixels.reshape(-1, pixels.shape[-1])
    assert (colours != colours[0]).any(axis=1).sum() > 0.01 * len(colours)   # not one colour


def lines_by_label(ax):
    """{legend label: (x data, y data)} of the lines drawn on ax."""
    return {line.get_label(): (list(map(float, line.get_xdata())), list(map(float, line.get_ydata())))
            for line in ax.get_lines()}


def bilinear(cam, size):
    """numpy (h, w) -> (size, size) by bilinear interpolation with half-pixel centres (cv2.resize's
    and torch's align_corners=False convention), written out here as the reference."""
    import numpy as np
    h = cam.shape[0]
    src = np.clip((np.arange(size) + 0.5) * h / size - 0.5, 0, h - 1)
    i0 = np.floor(src).astype(int)
    i1 = np.minimum(i0 + 1, h - 1)
    w = src - i0
    rows = cam[i0] * (1 - w)[:, None] + cam[i1] * w[:, None]
    return rows[:, i0] * (1 - w)[None, :] + rows[:, i1] * w[None, :]


def fake_history(epochs):
    return [{"epoch": e, "train_loss": 2.0 / e, "test_loss": 2.2 / e + 0.1,
             "train_acc": 100 - 50 / e, "test_acc": 98 - 50 / e} for e in range(1, epochs + 1)]


def fake_misclassified(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g)
    labels = torch.randint(0, 10, (n,), generator=g)
    preds = (labels + torch.randint(1, 10, (n,), generator=g)) % 10     # always wrong
    confidences = 0.3 + 0.7 * torch.rand(n, generator=g)
    return images, labels, preds, confidences


# ----------------------------------------------------------------------------------------------
# matplotlib is imported when a picture is drawn, not before

def test_importing_plots_or_train_does_not_import_matplotlib():
    code = ("import plots, train, sys; assert 'matplotlib' not in sys.modules, 'matplotlib imported'")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


# ----------------------------------------------------------------------------------------------
# Each plot: drawn, saved, returned

@pytest.mark.parametrize("epochs", [1, 6])
def test_plot_curves(tmp_path, epochs):
    history = fake_history(epochs)
    path = tmp_path / "curves.png"
    fig = plots.plot_curves(history, path=str(path))
    assert_png_drawn(fig, path)
    ax_loss, ax_acc = fig.axes
    x = [float(h["epoch"]) for h in history]
    for ax, key in ((ax_loss, "loss"), (ax_acc, "acc")):
        series = lines_by_label(ax)
        train_label, = [k for k in series if k.startswith("training set")]
        test_label, = [k for k in series if k.startswith("test set")]
        assert series[train_label] == (x, [h[f"train_{key}"] for h in history]), key
        assert series[test_label] == (x, [h[f"test_{key}"] for h in history]), key
    assert "Loss" in ax_loss.get_title() and "Accuracy" in ax_acc.get_title()
    final, = ax_acc.texts
    assert final.get_text() == f"final test accuracy\n{history[-1]['test_acc']:.2f}%"
    assert final.xy == (history[-1]["epoch"], history[-1]["test_acc"])


def test_plot_curves_without_epochs_says_so():
    fig = plots.plot_curves([])
    assert [t.get_text() for ax in fig.axes for t in ax.texts] == ["No epochs recorded yet"]
    assert fig.get_suptitle() == "Training and test curves"


def test_plot_curves_without_path_writes_nothing(tmp_path, monkeypatch):
    from matplotlib.figure import Figure
    monkeypatch.chdir(tmp_path)
    assert isinstance(plots.plot_curves(fake_history(2)), Figure)
    assert os.listdir(tmp_path) == []


def test_plot_lr_schedule(tmp_path):
    steps_per_epoch, lo, hi = 4, 0.02, 0.4
    up = [lo + (hi - lo) * s / 20 for s in range(21)]                 # steps 1..21: peak at 21
    lrs = up + [hi - (hi - lo) * s / 75 for s in range(1, 76)]
    path = tmp_path / "lr.png"
    fig = plots.plot_lr_schedule(lrs, steps_per_epoch, path=str(path))
    assert_png_drawn(fig, path)
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert "LRMAX = 0.4 at epoch 5.25" in texts       # peak at 1-based step 21 of 4 per epoch
    series = lines_by_label(fig.axes[0])
    assert series["learning rate"] == ([float(s) for s in range(1, 97)], lrs)
    marks = {label.split(":")[0]: xy for label, xy in series.items() if ":" in label}
    assert marks == {"start": ([1.0], [lo]), "peak": ([21.0], [hi]), "end": ([96.0], [lrs[-1]])}


def test_plot_misclassified(tmp_path):
    images, labels, preds, confidences = fake_misclassified(30)
    path = tmp_path / "mis.png"
    fig = plots.plot_misclassified(images, labels, preds, confidences, CLASSES, path=str(path), max_images=25)
    assert_png_drawn(fig, path)
    assert "25 shown of 30" in fig.get_suptitle()
    assert sum(ax.has_data() for ax in fig.axes) == 25
    assert "10 shown of 30" in plots.plot_misclassified(images, labels, preds, confidences, CLASSES).get_suptitle()
    for k, ax in enumerate(fig.axes[:25]):            # the first 25, in the order given
        shown = ax.images[0].get_array()
        assert shown.shape == (32, 32, 3)
        assert abs(shown - images[k].permute(1, 2, 0).numpy() / 255).max() < 1e-6, k
        assert ax.get_title() == (f"true: {CLASSES[labels[k]]}\n"
                                  f"pred: {CLASSES[preds[k]]} ({100 * confidences[k].item():.0f}%)")


def test_plot_misclassified_none(tmp_path):
    images, labels, preds, confidences = fake_misclassified(0)
    path = tmp_path / "mis.png"
    fig = plots.plot_misclassified(images, labels, preds, confidences, CLASSES, path=str(path))
    assert_png_drawn(fig, path)
    assert [t.get_text() for ax in fig.axes for t in ax.texts] == ["No misclassified test images"]
    assert not any(ax.images for ax in fig.axes)


def test_normalised_images_are_shown_like_raw_ones():
    images = fake_misclassified(3)[0]
    mean = torch.tensor(CIFAR10_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CIFAR10_STD).view(1, 3, 1, 1)
    normalised = (images.float() / 255 - mean) / std
    raw = plots.images_hwc(images)
    assert raw.shape == (3, 32, 32, 3)
    assert abs(plots.images_hwc(normalised, CIFAR10_MEAN, CIFAR10_STD) - raw).max() < 1e-5
    with pytest.raises(ValueError, match="mean and std"):    # the figure does not guess them
        plots.images_hwc(normalised)
    fig = plots.plot_misclassified(normalised, *fake_misclassified(3)[1:], CLASSES, mean=CIFAR10_MEAN,
                                   std=CIFAR10_STD)
    assert abs(fig.axes[0].images[0].get_array() - raw[0]).max() < 1e-5


def test_plots_does_not_import_the_data_module_or_the_trainer():
    """The figures take the mean and std they need, so drawing never needs the data or the trainer."""
    import ast
    tree = ast.parse(open(os.path.join(ROOT, "plots.py")).read())
    imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert not imported & {"data", "train", "bench", "lr_finder", "settings", "checkpoint"}, imported


def test_plot_gradcam(tmp_path):
    images, labels, preds, _ = fake_misclassified(3)
    g = torch.Generator().manual_seed(1)
    cams_pred, cams_true = torch.rand(2, 3, 32, 32, generator=g)
    path = tmp_path / "gradcam.png"
    fig = plots.plot_gradcam(images, cams_pred, cams_true, labels, preds, CLASSES, path=str(path))
    assert_png_drawn(fig, path)
    assert "(layer2)" in fig.get_suptitle()            # the default
    titles = [ax.get_title() for ax in fig.axes]
    assert f"Grad-CAM: {CLASSES[int(preds[0])]}\n(predicted)" in titles
    assert_gradcam_cells(fig, images, cams_pred.numpy(), cams_true.numpy(), labels, preds, alpha=0.5)


def assert_gradcam_cells(fig, images, cams_pred, cams_true, labels, preds, alpha, tol=1e-6):
    """Row i shows image i, then its overlay with the predicted class's map, then with the true
    class's map; maps are (N, 32, 32) numpy arrays at the picture's size. tol: for maps computed
    apart from the plot, where a value may fall in the neighbouring bin of the 256-colour jet
    map (at most 4/256 per channel, times alpha)."""
    import matplotlib
    jet = matplotlib.colormaps["jet"]
    for i in range(len(images)):
        picture = images[i].permute(1, 2, 0).numpy() / 255
        cells = fig.axes[3 * i:3 * i + 3]
        expected = (picture, (1 - alpha) * picture + alpha * jet(cams_pred[i])[..., :3],
                    (1 - alpha) * picture + alpha * jet(cams_true[i])[..., :3])
        for ax, want in zip(cells, expected):
            shown = ax.images[0].get_array()
            assert shown.shape == (32, 32, 3) and abs(shown - want).max() < tol, (i, ax.get_title())
        true, pred = CLASSES[int(labels[i])], CLASSES[int(preds[i])]
        assert [ax.get_title() for ax in cells] == [f"true: {true}\npred: {pred}", f"Grad-CAM: {pred}\n(predicted)",
                                                    f"Grad-CAM: {true}\n(true)"]


def test_plot_gradcam_upsamples_coarse_maps_and_takes_autograd_tensors(tmp_path):
    images, labels, preds, _ = fake_misclassified(2)
    cams = torch.rand(2, 4, 4, requires_grad=True)           # layer3's own 4x4 resolution
    fig = plots.plot_gradcam(images, cams, cams.flip(-1) * 1, labels, preds, CLASSES, layer="layer2",
                             path=str(tmp_path / "g.png"), alpha=0.4)
    assert_png_drawn(fig, tmp_path / "g.png")
    assert "(layer2)" in fig.get_suptitle()
    maps = cams.detach().double().numpy()
    up = [bilinear(m, 32) for m in maps], [bilinear(m[:, ::-1], 32) for m in maps]
    assert_gradcam_cells(fig, images, *up, labels, preds, alpha=0.4, tol=0.4 * 4 / 256 + 1e-6)


def test_plot_gradcam_none(tmp_path):
    images, labels, preds, _ = fake_misclassified(0)
    path = tmp_path / "gradcam.png"
    empty = torch.zeros(0, 32, 32)
    fig = plots.plot_gradcam(images, empty, empty, labels, preds, CLASSES, path=str(path))
    assert_png_drawn(fig, path)
    assert [t.get_text() for ax in fig.axes for t in ax.texts] == ["No misclassified test images to explain"]
    assert fig.get_suptitle().startswith("Grad-CAM on misclassified test images")
    assert not any(ax.images for ax in fig.axes)


def test_plot_confusion(tmp_path):
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 10, (500,), generator=g)
    guesses = torch.randint(0, 10, (500,), generator=g)
    preds = torch.where(torch.rand(500, generator=g) < 0.8, labels, guesses)
    cm = report.confusion_matrix(labels, preds)
    path = tmp_path / "confusion.png"
    fig = plots.plot_confusion(cm, CLASSES, path=str(path))
    assert_png_drawn(fig, path)
    accuracy = 100 * (labels == preds).double().mean().item()
    assert f"accuracy {accuracy:.2f}%" in fig.axes[0].get_title()
    assert len(fig.axes[0].texts) == 100                     # a count in every cell
    ax = fig.axes[0]
    assert (ax.images[0].get_array() == cm.numpy()).all()
    cells = {(round(t.get_position()[1]), round(t.get_position()[0])): t.get_text() for t in ax.texts}
    assert cells == {(t, p): str(int(cm[t, p])) for t in range(10) for p in range(10)}   # row true, column pred
    assert [t.get_text() for t in ax.get_yticklabels()] == list(CLASSES)
    assert not math.isnan(sum(report.per_class_accuracy(cm)))


def test_plot_lr_schedule_says_when_lrmax_falls_between_two_steps(tmp_path):
    import train
    # 2 epochs of 5 steps with the peak at 5/24 of them: step 1.08, which no step uses.
    lrs = [train.one_cycle_lr(s, 10, 2 * 5 / 24 * 5 - 1, 0.01, 0.1) for s in range(10)]
    fig = plots.plot_lr_schedule(lrs, 5, path=str(tmp_path / "lr.png"), lr_max=0.1)
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert any("falls between two steps" in t and "LRMAX = 0.1" in t for t in texts), texts
    # When a step does use LRMAX, the label is plain.
    fig = plots.plot_lr_schedule([0.01, 0.1, 0.05, 0.01], 2, lr_max=0.1)
    assert "LRMAX = 0.1 at epoch 1" in [t.get_text() for ax in fig.axes for t in ax.texts]


def all_text(fig):
    """Every string a viewer can read in fig: titles, labels, legends, annotations, colour bars."""
    texts = [fig.get_suptitle()] + [t.get_text() for t in fig.texts]
    for legend in fig.legends:
        texts += [t.get_text() for t in legend.get_texts()]
    for ax in fig.axes:
        texts += [ax.get_title(), ax.get_xlabel(), ax.get_ylabel()] + [t.get_text() for t in ax.texts]
        texts += [line.get_label() for line in ax.get_lines()]
    return " | ".join(texts)


def test_every_picture_names_a_validation_split_as_such():
    """Run on cifar10_jpeg.py's split, the pictures say "validation", never "test" (issue 10)."""
    images, labels, preds, confidences = fake_misclassified(3)
    cams = torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(0))
    figs = {"curves": plots.plot_curves(fake_history(3), split="validation"),
            "no curves": plots.plot_curves([], split="validation"),
            "gallery": plots.plot_misclassified(images, labels, preds, confidences, CLASSES, split="validation"),
            "no gallery": plots.plot_misclassified(images[:0], labels[:0], preds[:0], confidences[:0], CLASSES,
                                                   split="validation"),
            "gradcam": plots.plot_gradcam(images, cams, cams, labels, preds, CLASSES, split="validation"),
            "confusion": plots.plot_confusion(report.confusion_matrix(labels, preds), CLASSES, split="validation")}
    for name, fig in figs.items():
        text = all_text(fig)
        assert "validation" in text and "test" not in text.lower(), (name, text)
    assert "final validation accuracy" in all_text(figs["curves"])
