"""Every picture this project draws, and the figure helpers that draw them.

A run's curves, LR schedule, confusion matrix, misclassified gallery and Grad-CAM; the helpers
(new_figure, save_figure, message_figure, images_hwc) are what predict.py and series.py draw with.

Each plot function returns its matplotlib Figure and, given a path, saves it as a PNG written
atomically. matplotlib's object API (`Figure` on an Agg canvas), never pyplot: no display
needed, no global figure list, and the notebook shows the saved PNGs.

Inputs are CPU or device tensors (or lists); each function copies what it needs to the CPU.
Images are the raw uint8 CIFAR images (N, 3, 32, 32); a float batch is taken to be normalised
with the mean/std given with it and is de-normalised before it is shown. Nothing here imports
data.py: figures take what they draw.
"""
import math
import os

import torch

import gradcam
from utils import atomic_write


def new_figure(figsize, **kwargs):
    """A matplotlib Figure of `figsize` inches with the constrained layout, for every picture of
    this project (a run's report, predict.py's explanations, series.py's accuracies).

    No pyplot and no display: the Figure draws on its own Agg canvas, works in a terminal, a
    notebook or a test, and is garbage-collected when dropped. Save it with save_figure."""
    # Imported here, not at the top: `import plots` (and so `import train`) stays fast and works
    # where matplotlib is missing until a picture is drawn.
    from matplotlib.figure import Figure
    return Figure(figsize=figsize, layout="constrained", **kwargs)


def save_figure(fig, path):
    """Save fig as PNG (or the format of path's extension) when path is given; return fig.
    The file is written atomically: an interrupted save never leaves half a picture."""
    if path is not None:
        path = os.fspath(path)
        fmt = os.path.splitext(path)[1].lstrip(".").lower() or "png"
        atomic_write(path, lambda tmp: fig.savefig(tmp, format=fmt, dpi=120, bbox_inches="tight"))
    return fig


def message_figure(text, title, path, figsize=(6, 2.5)):
    """A figure that says why there is nothing to plot (an empty plot would look like a bug)."""
    fig = new_figure(figsize)
    ax = fig.add_subplot()
    ax.set_axis_off()
    ax.text(0.5, 0.5, text, ha="center", va="center", fontsize=14, transform=ax.transAxes)
    fig.suptitle(title, fontsize=13)
    return save_figure(fig, path)


def _cpu(x, dtype=None):
    """A tensor on the CPU, detached (Grad-CAM maps may still carry autograd history)."""
    x = torch.as_tensor(x).detach().cpu()
    return x if dtype is None else x.to(dtype)


def images_hwc(images, mean=None, std=None):
    """(N, 3, H, W) images -> float numpy (N, H, W, 3) in 0..1, what imshow expects.

    uint8 images are divided by 255. Float images are taken to be normalised, x = (raw/255 - mean)
    / std, and are mapped back with x * std + mean: the caller gives the mean and std it
    normalised with (a figure draws what it is given; it does not look up a data set's numbers).
    """
    images = _cpu(images)
    if images.dtype == torch.uint8:
        rgb = images.float() / 255
    else:
        if mean is None or std is None:
            raise ValueError("float images are taken to be normalised: give the mean and std they were "
                             "normalised with (or pass the raw uint8 images)")
        mean = torch.as_tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
        std = torch.as_tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
        rgb = images.float() * std + mean
    return rgb.clamp(0, 1).permute(0, 2, 3, 1).numpy()       # (N, H, W, 3)


def _pct(x):
    return f"{x:.2f}%"


def plot_curves(history, path=None, split="test"):
    """Loss and accuracy of every epoch, on the training and the test set, side by side.

    history: a list of dicts, one per epoch, with "epoch" (1-based), "train_loss", "test_loss",
    "train_acc" and "test_acc" (accuracies in percent). A missing or None value leaves a gap.
    split: what the held-out images are, for the labels: "test" or "validation" (data.Cifar10).
    """
    if not history:
        return message_figure("No epochs recorded yet", f"Training and {split} curves", path)

    def column(key):
        return [float("nan") if h.get(key) is None else float(h[key]) for h in history]

    from matplotlib.ticker import MaxNLocator
    epochs = [int(h["epoch"]) for h in history]
    fig = new_figure((12, 4.6))
    ax_loss, ax_acc = fig.subplots(1, 2)
    panels = ((ax_loss, "loss", "loss (cross-entropy, mean per image)", "Loss (lower is better)"),
              (ax_acc, "acc", "accuracy (%)", "Accuracy (higher is better)"))
    for ax, key, ylabel, title in panels:
        ax.plot(epochs, column(f"train_{key}"), "o-", color="tab:blue", markersize=4,
                label="training set (augmented; running mean during the epoch)")
        ax.plot(epochs, column(f"test_{key}"), "s-", color="tab:orange", markersize=4,
                label=f"{split} set (evaluated after the epoch)")
        ax.set_xlabel("epoch", fontsize=11)
        ax.set_ylabel(ylabel, fontsize=11)
        ax.set_title(title, fontsize=12)
        ax.set_xlim(min(epochs) - 0.5, max(epochs) + 0.5)
        if len(epochs) <= 12:
            ax.set_xticks(epochs)             # few epochs: one tick each, never "epoch 0.7"
        else:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    # Loss from 0 shows how far it fell; accuracy up to 100% shows how far it has left to go.
    losses = [v for v in column("train_loss") + column("test_loss") if v == v] or [1]   # not NaN
    ax_loss.set_ylim(0, 1.08 * max(losses))
    accs = [v for v in column("train_acc") + column("test_acc") if v == v] or [0]
    ax_acc.set_ylim(max(0, min(accs) - 5), 100)
    # One legend for both panels, below them, where it can hide no point.
    fig.legend(*ax_loss.get_legend_handles_labels(), loc="outside lower center", ncols=2,
               fontsize=10)

    # The number the run is judged by: the final test accuracy, written next to its point.
    finals = [(e, a) for e, a in zip(epochs, column("test_acc")) if a == a]   # a == a: not NaN
    if finals:
        e, a = finals[-1]
        ax_acc.annotate(f"final {split} accuracy\n{_pct(a)}", xy=(e, a), xycoords="data",
                        xytext=(0.97, 0.42), textcoords="axes fraction", ha="right", va="center",
                        fontsize=11, fontweight="bold", color="tab:orange",
                        arrowprops=dict(arrowstyle="->", color="tab:orange"))
    fig.suptitle(f"Training and {split} curves", fontsize=14)
    return save_figure(fig, path)


def plot_lr_schedule(lrs, steps_per_epoch, path=None, lr_max=None, note=""):
    """The learning rate of every optimizer step, against steps (bottom) and epochs (top).

    lrs: the LR used at each step, in order. Step s (1-based) ends s / steps_per_epoch epochs of
    training, so the peak of a one-cycle schedule at the end of epoch 5 reads "epoch 5".
    lr_max: the schedule's LRMAX, when known. When the peak falls between two steps (a peak
    epoch that is not a whole number of steps), no step uses LRMAX itself; the label says so.
    note: words added to the title (e.g. "LRs found on synthetic data").
    """
    title = "One-cycle LR schedule (as used" + (f"; {note})" if note else ")")
    lrs = [float(x) for x in lrs]
    if steps_per_epoch < 1:
        raise ValueError(f"steps_per_epoch must be at least 1, got {steps_per_epoch}")
    if not lrs:
        return message_figure("No optimizer steps recorded", title, path)
    from matplotlib.ticker import MaxNLocator
    spe = steps_per_epoch
    steps = list(range(1, len(lrs) + 1))
    peak = max(range(len(lrs)), key=lrs.__getitem__)           # first step at the maximum
    lr_min = min(lrs)
    between = lr_max is not None and not math.isclose(lrs[peak], lr_max, rel_tol=1e-6)

    def at(i):
        where = f"step {steps[i]}" if i == 0 else f"epoch {steps[i] / spe:.3g}, step {steps[i]}"
        return f"{lrs[i]:.3g} ({where})"

    fig = new_figure((10, 4.8))
    ax = fig.add_subplot()
    ax.plot(steps, lrs, "-", color="tab:blue", linewidth=2, label="learning rate", zorder=2)
    # Start and end go in the legend (their values sit at the bottom, where text would cross the
    # line); the peak also gets an annotation, in the headroom above it.
    marks = ((0, "start", "o", "tab:green"), (peak, "peak", "*", "tab:red"),
             (len(lrs) - 1, "end", "s", "tab:purple"))
    for i, what, marker, colour in marks:
        # isclose: the scheduler's last LR may differ from LRMIN in the 16th digit
        is_min = math.isclose(lrs[i], lr_min, rel_tol=1e-6)
        name = ("highest LR" if between else "LRMAX") if i == peak else "LRMIN" if is_min else "LR"
        ax.plot(steps[i], lrs[i], marker, color=colour, markersize=15 if i == peak else 8,
                zorder=3, clip_on=False, label=f"{what}: {name} = {at(i)}")
    peak_text = (f"highest LR used = {lrs[peak]:.3g} at epoch {steps[peak] / spe:.3g}\n"
                 f"(LRMAX = {lr_max:.3g} falls between two steps)" if between
                 else f"LRMAX = {lrs[peak]:.3g} at epoch {steps[peak] / spe:.3g}")
    ax.annotate(peak_text,
                xy=(steps[peak], lrs[peak]), xytext=(12, 4), textcoords="offset points",
                ha="left", va="bottom", fontsize=11, fontweight="bold", color="tab:red")
    top = lrs[peak] if lrs[peak] > 0 else 1.0
    ax.set_ylim(0, 1.2 * top)                  # from 0, so the LR's ratio LRMAX/LRMIN is visible
    ax.set_xlim(0, len(lrs) + 0.5)
    ax.set_xlabel(f"optimizer step ({spe} steps per epoch)", fontsize=11)
    ax.set_ylabel("learning rate", fontsize=11)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper right", fontsize=9, framealpha=0.95)
    epochs_axis = ax.secondary_xaxis("top", functions=(lambda s: s / spe, lambda e: e * spe))
    epochs_axis.set_xlabel("epochs completed", fontsize=11)
    epochs_axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title(title, fontsize=14)
    return save_figure(fig, path)


def _class_name(classes, i):
    i = int(i)
    return str(classes[i]) if 0 <= i < len(classes) else f"class {i}"


def plot_misclassified(images, labels, preds, confidences, classes, path=None, max_images=10,
                       mean=None, std=None, split="test"):
    """A gallery of misclassified images, 5 per row, each titled with true and predicted class.

    images: uint8 (N, 3, 32, 32), the raw misclassified images in order (a float batch is
    de-normalised with mean/std, the ones it was normalised with, which must then be given);
    labels, preds: int (N,); confidences: float (N,) in [0, 1], the softmax probability of the
    predicted class. Shows the first max_images. N == 0 gives a figure that says so.
    split: what the held-out images are, for the labels: "test" or "validation" (data.Cifar10).
    """
    title = f"Misclassified {split} images"
    labels, preds = _cpu(labels).flatten().tolist(), _cpu(preds).flatten().tolist()
    total = len(labels)
    if total == 0:
        return message_figure(f"No misclassified {split} images", title, path)
    shown = min(total, max_images)
    pictures = images_hwc(_cpu(images)[:shown], mean, std)
    confidences = _cpu(confidences, torch.float32).flatten().tolist()
    cols = 5
    rows = -(-shown // cols)
    fig = new_figure((cols * 1.7, rows * 2.0 + 0.5))
    axes = fig.subplots(rows, cols, squeeze=False).flatten()
    for k, ax in enumerate(axes):
        ax.set_axis_off()
        if k >= shown:
            continue
        ax.imshow(pictures[k], interpolation="nearest")
        ax.set_title(f"true: {_class_name(classes, labels[k])}\n"
                     f"pred: {_class_name(classes, preds[k])} ({100 * confidences[k]:.0f}%)",
                     fontsize=9)
    fig.suptitle(f"{title} ({shown} shown of {total})\n"
                 "pred (x%) = predicted class and its softmax probability", fontsize=12)
    return save_figure(fig, path)


def plot_gradcam(images, cams_pred, cams_true, labels, preds, classes, path=None, alpha=0.5,
                 layer="layer2", max_images=10, mean=None, std=None, split="test"):
    """Grad-CAM of misclassified images: the image, the map for the predicted class, the map for
    the true class, one row per image (the first max_images).

    images: uint8 (N, 3, 32, 32) raw (a float batch is de-normalised with mean/std, which must
    then be given); cams_pred, cams_true: float (N, h, w) in [0, 1] (upsampled bilinearly to the
    image size if smaller); labels, preds: int (N,). alpha: weight of the heat map in the blend.
    layer: the layer the maps come from, for the title.
    split: what the held-out images are, for the labels: "test" or "validation" (data.Cifar10).
    """
    title = f"Grad-CAM on misclassified {split} images ({layer})"
    labels, preds = _cpu(labels).flatten().tolist(), _cpu(preds).flatten().tolist()
    n = min(len(labels), max_images)
    if n == 0:
        return message_figure(f"No misclassified {split} images to explain", title, path)
    import matplotlib
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    pictures = images_hwc(_cpu(images)[:n], mean, std)
    size = pictures.shape[1:3]

    def prepare(cams):
        cams = _cpu(cams, torch.float32)[:n]
        if tuple(cams.shape[-2:]) != tuple(size):
            cams = torch.nn.functional.interpolate(cams[:, None], size=size, mode="bilinear",
                                                   align_corners=False)[:, 0]
        return cams.clamp(0, 1)

    cams_pred, cams_true = prepare(cams_pred), prepare(cams_true)
    over_pred = gradcam.blend(pictures, cams_pred, alpha).numpy()           # (n, H, W, 3)
    over_true = gradcam.blend(pictures, cams_true, alpha).numpy()
    fig = new_figure((3 * 2.1 + 1.2, n * 2.1 + 0.6))
    axes = fig.subplots(n, 3, squeeze=False)
    for i in range(n):
        true, pred = _class_name(classes, labels[i]), _class_name(classes, preds[i])
        cells = ((pictures[i], f"true: {true}\npred: {pred}"),
                 (over_pred[i], f"Grad-CAM: {pred}\n(predicted)"),
                 (over_true[i], f"Grad-CAM: {true}\n(true)"))
        for ax, (picture, caption) in zip(axes[i], cells):
            ax.imshow(picture, interpolation="nearest")
            ax.set_title(caption, fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
    colours = ScalarMappable(norm=Normalize(0, 1), cmap=matplotlib.colormaps["jet"])
    bar = fig.colorbar(colours, ax=axes, shrink=min(1.0, 3.0 / n), aspect=20, pad=0.04)
    bar.set_label("Grad-CAM (0 = none, 1 = max)", fontsize=10)
    fig.suptitle(f"{title}\nred = the regions that raised that class's score most", fontsize=12)
    return save_figure(fig, path)


def plot_confusion(confusion, classes, path=None, split="test"):
    """The confusion matrix as a heat map with the count in every cell.

    confusion: int (C, C), rows = true class, columns = predicted class (see confusion_matrix).
    split: what the held-out images are, for the labels: "test" or "validation" (data.Cifar10).
    """
    confusion = _cpu(confusion, torch.int64)
    c = confusion.shape[0]
    total = int(confusion.sum())
    accuracy = 100.0 * int(confusion.diagonal().sum()) / total if total else float("nan")
    names = [_class_name(classes, i) for i in range(c)]
    counts = confusion.numpy()
    fig = new_figure((8.4, 7.2))
    ax = fig.add_subplot()
    image = ax.imshow(counts, cmap="Blues", vmin=0, vmax=max(1, counts.max()))
    # White on the dark cells, black on the light ones, so every count can be read.
    threshold = image.norm.vmax / 2
    size = 9 if c <= 10 else 7
    for t in range(c):
        for p in range(c):
            value = int(counts[t, p])
            ax.text(p, t, str(value), ha="center", va="center", fontsize=size,
                    color="white" if value > threshold else "black")
    ax.set_xticks(range(c), names, rotation=45, ha="right", rotation_mode="anchor", fontsize=10)
    ax.set_yticks(range(c), names, fontsize=10)
    ax.set_xlabel("predicted class", fontsize=11)
    ax.set_ylabel("true class", fontsize=11)
    bar = fig.colorbar(image, ax=ax, shrink=0.85)
    bar.set_label(f"number of {split} images", fontsize=10)
    ax.set_title(f"Confusion matrix ({split} set, accuracy {_pct(accuracy)})\n"
                 "diagonal = correct; row = true class, column = predicted", fontsize=12)
    return save_figure(fig, path)
