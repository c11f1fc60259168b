"""What a finished run shows: its metrics, its pictures and README.md, a report to hand in.

In the run's folder: per-class accuracy and the misclassified images in the record; images.pt (the
held-out images the report and the web app show); the pictures (curves, LR schedule, range test,
confusion, misclassified images, Grad-CAM); README.md, the report a student can commit as their
assignment's README, every number in it taken from the record (metrics.json).
"""
import contextlib
import os
import time

import torch
from tqdm import tqdm

import gradcam
import lr_finder
import plots
import utils
from custom_resnet import normalize

GALLERY_KEPT = 100          # the most confident mistakes images.pt keeps, for the web app's gallery


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


def data_label(record) -> str:
    """What the held-out images are, for every title and line: "test", "validation", or
    "synthetic test" (synthetic data says nothing about CIFAR-10, and every picture says so)."""
    split = record["data"].get("eval_split", "test")
    return f"synthetic {split}" if record["data"]["source"] == "synthetic" else split


def end_line(record) -> str:
    """The log's last line: the accuracy on what it was measured, the LRs, where the report is."""
    synthetic = record["data"]["source"] == "synthetic"
    return (f"{data_label(record)} accuracy {record['test_accuracy']:.2f}% ({record['test_correct']}/"
            f"{record['history'][-1]['test_n']})" + (" on synthetic data, which says nothing about CIFAR-10"
                                                     if synthetic else "")
            + f"; LRMIN {record['lr_min']:.4g}, LRMAX {record['lr_max']:.4g}; the report is "
            f"{record['config']['out_dir']}/README.md")


def start_line(record) -> str:
    """The log's first line: the device and precision, and how many images of what."""
    rt, d = record["runtime"], record["data"]
    return (f"device {rt['device']} ({rt.get('gpu', rt['cpu'])}), precision {rt['precision']}; "
            f"{d['train_images']:,} training and {d['test_images']:,} {d['eval_split']} images"
            + (" (synthetic)" if d["source"] == "synthetic" else ""))


@contextlib.contextmanager
def range_test_bar(steps, show=True):
    """A progress bar for the LR range test: yields lr_finder.lr_range_test's step_hook, which
    moves it and shows each step's LR and loss (the test reads every loss anyway: no extra sync)."""
    with tqdm(total=steps, desc="LR range test", disable=not show, dynamic_ncols=True, leave=False) as bar:
        def shown(i, lr, loss):
            bar.set_postfix_str(f"LR {lr:.3g} loss {loss:.3f}", refresh=False)
            bar.update(1)
        yield shown


def expected_time(started, steps_left, images_evaluated, batch_size):
    """train_one_epoch's on_pace for the first epoch a process trains: one line saying when the
    run should end on this device. Training at the pace of the first steps; an evaluation counted
    as a third of a training step per image (a forward pass: the backward pass costs about twice
    as much); the pictures at the end not counted."""
    def duration(s):
        return f"{s:.0f} s" if s < 90 else f"{s / 60:.0f} min" if s < 5400 else f"{s // 3600:.0f} h {s % 3600 / 60:02.0f} min"

    def say(per_step, steps_done):
        rest = per_step * (steps_left - steps_done - 1 + images_evaluated / batch_size / 3)
        tqdm.write(f"expected: about {duration(time.perf_counter() - started + rest)} for this run on this device, "
                   f"{duration(rest)} of it still to come ({per_step:.3g} s a training step over steps "
                   f"2-{steps_done + 1}; evaluation estimated, the pictures at the end not counted)")
    return say


def mistakes(labels, preds, confs):
    """Indices of the misclassified held-out images, the most confident mistakes first
    (labels, preds: (N,) class indices; confs: (N,) the softmax probability of each prediction)."""
    wrong = (preds != labels).nonzero().flatten()
    return wrong[confs[wrong].argsort(descending=True, stable=True)]


# ----------------------------------------------------------------------------------------------
# The run's report

def make(record, model, data, final_eval, cfg):
    """Everything a finished run shows, from its final evaluation `final_eval` (preds and
    confidences of every held-out image) and the model evaluated last: the record's per-class
    accuracy, misclassified images, parameters and command; images.pt; the pictures (cfg.plots)."""
    preds, confs = final_eval["preds"].cpu(), final_eval["confidences"].float().cpu()
    wrong = mistakes(data.test_labels, preds, confs)
    cm = confusion_matrix(data.test_labels, preds, num_classes=10)
    shown = wrong[:cfg.misclassified]
    record.update(
        per_class_accuracy=dict(zip(data.classes, per_class_accuracy(cm))),
        parameters=sum(p.numel() for p in model.parameters()),
        command=cfg.command(), keywords=cfg.keywords(),
        misclassified=[{"index": int(i), "label": data.classes[int(data.test_labels[i])],
                        "predicted": data.classes[int(preds[i])], "confidence": float(confs[i])} for i in shown],
        misclassified_total=len(wrong))
    save_images(os.path.join(cfg.out_dir, "images.pt"), data, wrong[:GALLERY_KEPT], preds, confs)
    if cfg.plots:
        draw(record, model, data, (wrong, preds, confs, cm), cfg.gradcam_layer, cfg.out_dir)


def save_images(path, data, wrong, preds, confs):
    """images.pt: the held-out images a report and the web app show, as uint8 tensors with their
    labels: the given mistakes (most confident first) and one example of each class (its first
    correctly classified image, else its first), so the app needs no data set."""
    examples = []
    for c in range(len(data.classes)):
        of_class = (data.test_labels == c).nonzero().flatten()
        right = of_class[preds[of_class] == c]
        if len(of_class):
            examples.append(int(right[0] if len(right) else of_class[0]))
    examples = torch.tensor(examples, dtype=torch.long)
    utils.atomic_torch_save({
        "classes": list(data.classes), "split": data.eval_split,
        "misclassified": {"index": wrong, "images": data.test_images[wrong].clone(), "labels": data.test_labels[wrong],
                          "predicted": preds[wrong], "confidence": confs[wrong]},
        "examples": {"index": examples, "images": data.test_images[examples].clone(),
                     "labels": data.test_labels[examples]}}, path)


def draw(record, model, data, found, layer, out_dir):
    """The pictures of docs/SPEC.md section 3 in out_dir: found = (mistakes, preds, confidences,
    confusion matrix); the first len(record["misclassified"]) mistakes are shown, each with its
    Grad-CAM at `layer` for the predicted and for the true class, side by side."""
    wrong, preds, confs, cm = found
    label = data_label(record)                        # "test", "validation" or "synthetic test"
    synthetic = record["data"]["source"] == "synthetic"
    range_test = record["lr_range_test"]
    if range_test and not os.path.exists(os.path.join(out_dir, "lr_range_test.png")):   # resumed elsewhere
        draw_range_test(range_test, out_dir, synthetic=synthetic)
    plots.plot_curves(record["history"], os.path.join(out_dir, "curves.png"), split=label)
    note = ("LRs found on synthetic data" if range_test else "synthetic data") if synthetic else ""
    plots.plot_lr_schedule(record["lr_schedule"], record["steps_per_epoch"], os.path.join(out_dir, "lr_schedule.png"),
                           lr_max=record["lr_max"], note=note)
    plots.plot_confusion(cm, data.classes, os.path.join(out_dir, "confusion.png"), split=label)
    n = len(record["misclassified"])
    plots.plot_misclassified(data.test_images[wrong], data.test_labels[wrong], preds[wrong], confs[wrong],
                             data.classes, os.path.join(out_dir, "misclassified.png"), max_images=n, split=label)
    few = wrong[:n]
    cams_pred = cams_true = torch.zeros(0, 32, 32)
    title = layer
    if len(few):                                                      # else: a picture that says so
        device = next(model.parameters()).device
        x = normalize(data.test_images[few].to(device))                  # (n, 3, 32, 32)
        with gradcam.GradCAM(model, layer) as cam:
            cams_pred = cam(x, preds[few].to(device)).cpu()
            cams_true = cam(x, data.test_labels[few].to(device)).cpu()
            h, w = cam.activations.shape[-2:]
            title = f"{layer}, {h}x{w} map"
            record["gradcam"] = {"layer": layer, "map_size": [int(h), int(w)]}
    plots.plot_gradcam(data.test_images[few], cams_pred, cams_true, data.test_labels[few], preds[few],
                       data.classes, os.path.join(out_dir, "gradcam.png"), layer=title, max_images=n, split=label)
    print(f"plots saved in {out_dir}: " + " ".join(sorted(f for f in os.listdir(out_dir) if f.endswith(".png"))))


def draw_range_test(range_test, out_dir, draw=True, synthetic=False):
    """lr_range_test.png of a range test's result (its dict, or None when the LRs were given).
    Drawn as soon as the test is done: worth a look while training runs. An earlier run's
    picture is removed when this run has none: it would not describe these LRs."""
    path = os.path.join(out_dir, "lr_range_test.png")
    if range_test is not None and draw:
        title = "LR range test" + (" (synthetic data)" if synthetic else "")
        plots.save_figure(lr_finder.plot_range_test(lr_finder.RangeTestResult(**range_test), title=title), path)
    elif os.path.exists(path):
        os.remove(path)


# ----------------------------------------------------------------------------------------------
# README.md: the report to hand in

PICTURES = {"lr_range_test.png": "LR range test, LRMIN and LRMAX marked", "lr_schedule.png": "the LR schedule used",
            "curves.png": "loss and accuracy per epoch", "misclassified.png": "misclassified images",
            "gradcam.png": "Grad-CAM of the misclassified images", "confusion.png": "confusion matrix"}


def describe_data(record) -> str:
    """The held-out images named for what they are, with the training set's size."""
    d, cfg = record["data"], record["config"]
    if d["source"] == "synthetic":
        return (f"**synthetic data** of CIFAR-10's shape ({d['train_images']:,} training and {d['test_images']:,} "
                "held-out images made by `data.synthetic_cifar10`): it checks the pipeline and says nothing about "
                "accuracy on CIFAR-10")
    if d.get("eval_split") == "validation":
        return (f"{d['train_images']:,} training images of `{cfg['data_dir']}`; evaluated on the {d['test_images']:,} "
                "images of its `test_batch`, which is labelled a **validation split** (not the CIFAR-10 test set)")
    return (f"CIFAR-10: {d['train_images']:,} training images of `{cfg['data_dir']}`; evaluated on the "
            f"{d['test_images']:,} images of its `test_batch` (the official **CIFAR-10 test set** when downloaded)")


def describe_hardware(record) -> str:
    rt = record["runtime"]
    where = rt.get("gpu") or f"{rt['cpu']}, {rt['cpu_threads']} CPU threads"
    return f"{rt['device']} ({where}), {rt['precision']}, torch {rt['torch']}"


def describe_time(record) -> str:
    t = record["timings"]
    parts = [f"{t['train_seconds']:.1f} s training", f"{t['eval_seconds']:.1f} s evaluating"]
    if t.get("lr_test_seconds"):
        parts.insert(0, f"{t['lr_test_seconds']:.1f} s range test")
    if t.get("compile_seconds"):
        parts.append(f"{t['compile_seconds']:.1f} s compiling")
    resumed = record["config"].get("resume")
    total = f"{t['total_seconds']:.1f} s in all: " if t.get("total_seconds") and not resumed else ""
    return (total + ", ".join(parts) + f" ({t['images_per_second']:,.0f} training images/s)"
            + (f"; resumed, the last session took {t['total_seconds']:.1f} s" if resumed and t.get("total_seconds") else ""))


def markdown(record, out_dir) -> str:
    """The report of a finished run as Markdown, every number from its record; pictures linked
    relatively, and only those in out_dir."""
    cfg, h, label = record["config"], record["history"], data_label(record)
    final = h[-1]
    code = record.get("code") or {}
    commit = (f"commit `{code['git_commit'][:12]}`" + (" with uncommitted changes" if code.get("git_dirty") else "")
              if code.get("git_commit") else "not a git checkout")
    pictures = {name for name in PICTURES if os.path.exists(os.path.join(out_dir, name))}

    def picture(name):
        return [f"![{PICTURES[name]}]({name})", ""] if name in pictures else []
    what = "synthetic data" if record["data"]["source"] == "synthetic" else "CIFAR-10"
    lines = [f"# Custom ResNet on {what}: {record['test_accuracy']:.2f}% {label} accuracy", ""]
    if record["data"]["source"] == "synthetic":
        lines += ["> **Synthetic data.** These numbers check that the pipeline runs; they say nothing about "
                  "accuracy on CIFAR-10.", ""]
    lines += ["| | |", "|---|---|",
              f"| {label} accuracy | **{record['test_accuracy']:.2f}%** ({record['test_correct']:,}/{final['test_n']:,}) "
              f"after {len(h)} epochs{' with flip TTA' if cfg['tta'] else ''} |",
              f"| data | {describe_data(record)} |",
              f"| LRMIN, LRMAX | {record['lr_min']:.4g}, {record['lr_max']:.4g} ({record['lr_source']}) |",
              f"| schedule | one cycle of {cfg['epochs']} epochs at batch {cfg['batch_size']}: LRMIN up to LRMAX at the "
              f"end of epoch {cfg['peak_epoch']:g}, back to LRMIN at the end; {record['total_steps']:,} steps |",
              f"| model | CustomResNet(width={cfg['width']}), {record['parameters']:,} parameters |",
              f"| hardware | {describe_hardware(record)} |",
              f"| time | {describe_time(record)} |",
              f"| code | {commit} |", "",
              "## What was run", "", "```bash", record["command"], "```", ""]
    kw = ", ".join(f"{k}={v!r}" for k, v in record["keywords"].items())
    lines += [f"From Python: `train.main({kw})`." + (f" Resumed from `{cfg['resume']}`." if cfg["resume"] else ""), ""]
    lines += ["## LRMIN and LRMAX", ""]
    if record["lr_range_test"]:
        rt = record["lr_range_test"]
        lines += [f"Found by the LR range test: {len(rt['lrs'])} steps ({rt['stop_reason']}). {rt['rule']}."
                  + (f" Note: {rt['note']}." if rt["note"] else ""), ""] + picture("lr_range_test.png")
    else:
        lines += [f"Given: {record['lr_source']}.", ""]
    lines += picture("lr_schedule.png")
    lines += ["## Every epoch", "", f"| epoch | LR at its end | train loss | train accuracy | {label} loss | "
              f"{label} accuracy |", "|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {e['epoch']} | {e['lr']:.4g} | {e['train_loss']:.4f} | {e['train_acc']:.2f}% | {e['test_loss']:.4f} | "
              f"{e['test_acc']:.2f}% |" for e in h]
    lines += ["", "Training accuracy is over the augmented batches of the epoch, as they were trained.", ""]
    lines += picture("curves.png")
    lines += ["## Per-class accuracy", "", "| class | accuracy |", "|---|---:|"]
    lines += [f"| {c} | {'-' if a is None else f'{a:.2f}%'} |" for c, a in record["per_class_accuracy"].items()]
    lines += [""] + picture("confusion.png")
    shown = record["misclassified"]
    lines += [f"## {len(shown)} misclassified {label} images", ""]
    if not shown:
        lines += ["None: every held-out image was classified correctly." if not record["misclassified_total"] else
                  f"None shown (`--misclassified 0`) of the {record['misclassified_total']:,} mistakes.", ""]
    else:
        lines += [f"The most confident of the {record['misclassified_total']:,} mistakes, with the softmax probability "
                  "of the predicted class.", "", "| # | image | true | predicted | confidence |", "|---:|---:|---|---|---:|"]
        lines += [f"| {i + 1} | {m['index']} | {m['label']} | {m['predicted']} | {100 * m['confidence']:.1f}% |"
                  for i, m in enumerate(shown)]
        lines += [""] + picture("misclassified.png")
    if shown and "gradcam" in record and "gradcam.png" in pictures:
        layer, (mh, mw) = record["gradcam"]["layer"], record["gradcam"]["map_size"]
        lines += ["## Grad-CAM", "", f"For each image above, the map of the predicted class beside the map of the true "
                  f"class, taken at `{layer}`, whose map is {mh}x{mw} pixels, upsampled to the image.", ""]
        lines += picture("gradcam.png")
    return "\n".join(lines).rstrip() + "\n"


def write_markdown(record, out_dir):
    """README.md in out_dir: GitHub shows it when the folder is opened."""
    text = markdown(record, out_dir)
    utils.atomic_write_text(text, os.path.join(out_dir, "README.md"))
