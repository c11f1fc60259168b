"""Export a finished run as a Hugging Face Space, ready to push; --serve starts it on 127.0.0.1.

    python -m app.export out space                # out: a finished run's folder; space: the Space to write
    python -m app.export out space --serve        # the same, then serve it at http://127.0.0.1:7860
    python -m app.export out space --data "the validation split of JPEG copies of CIFAR-10 training images"

The Space holds app.py and the modules it imports (the inference code: no training code, no data
download), its requirements.txt, the run's weights (read with weights_only and verified), 10
example images (one per class) and the run's misclassified held-out images with their labels
(from the run's images.pt, so the gallery needs no data set), space.json (what the run measured)
and README.md, the Space's page, with the Spaces header and the run's figures. Push the folder to
a Space (`git push` to huggingface.co/spaces/<you>/<name>) and it runs there on a CPU.
"""
import argparse
import ast
import json
import os
import shutil
import subprocess
import sys

import torch

import report
import utils
import weights
from custom_resnet import CLASSES
from utils import UsageError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
APP = os.path.join(ROOT, "app")
TRAINING = {"train", "settings", "series", "lr_finder", "report", "data", "bench", "checkpoint"}    # never in a Space
GRADIO = "6.31.0"          # the version app.py was written and tested with (the Spaces header's sdk_version)


def modules_of(path) -> list:
    """The project modules a Space needs to run `path`: those it imports at module level, and
    theirs, transitively (a module imported inside a function, e.g. predict.py's data for
    --evaluate, is not needed to serve the app). Sorted file names."""
    project = {f[:-3] for f in os.listdir(ROOT) if f.endswith(".py")}
    seen, todo = set(), [path]
    while todo:
        tree = ast.parse(open(todo.pop()).read())
        for node in tree.body:                                        # module level only
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module] if isinstance(node, ast.ImportFrom) and node.module and not node.level else [])
            for name in {n.split(".")[0] for n in names} & project - seen:
                seen.add(name)
                todo.append(os.path.join(ROOT, f"{name}.py"))
    return sorted(f"{m}.py" for m in seen)


def finished_run(run_dir):
    """(record, weights) of a finished run's folder; UsageError naming what is missing."""
    metrics = os.path.join(run_dir, "metrics.json")
    if not os.path.isdir(run_dir):
        raise UsageError(f"{run_dir}: no such folder; give the output folder of a finished run (train.py's --out-dir)")
    try:
        with open(metrics) as f:
            record = json.load(f)
    except FileNotFoundError:
        raise UsageError(f"{run_dir} holds no run (no metrics.json): give the output folder of a finished run") from None
    except (OSError, ValueError) as e:
        raise UsageError(f"{metrics}: not a readable record ({utils.first_line(e)})") from None
    if record.get("status") != "complete":
        resume = os.path.join(run_dir, "checkpoint.pt")
        raise UsageError(f"{run_dir} holds a run that is {record.get('status', 'unknown')}, not finished: finish it "
                         f"first (python train.py --resume {resume})")
    path = os.path.join(run_dir, "model.pt")
    if not os.path.exists(path):
        raise UsageError(f"{run_dir} has no model.pt: the run's weights are missing; resume the finished run to write "
                         f"them again (python train.py --resume {os.path.join(run_dir, 'checkpoint.pt')})")
    trained_weights = weights.read_weights(path, "give the model.pt of a finished run")
    width, trained = record["config"]["width"], trained_weights.get("prep.conv.weight")
    if trained is None or trained.shape[0] != width:
        found = "no prep.conv.weight" if trained is None else f"width {trained.shape[0]}"
        raise UsageError(f"{path} is a model of {found}, but the run's record says width {width}: the weights are "
                         "not this run's; copy the run's own model.pt back, or export the run it came from")
    if not os.path.exists(os.path.join(run_dir, "images.pt")):
        raise UsageError(f"{run_dir} has no images.pt (the images the app shows); resume the finished run to write "
                         f"it: python train.py --resume {os.path.join(run_dir, 'checkpoint.pt')}")
    return record, trained_weights


def space_json(record, data_name):
    return {"accuracy": record["test_accuracy"], "correct": record["test_correct"],
            "n": record["history"][-1]["test_n"], "split": report.data_label(record),
            "data": data_name or default_data_name(record), "source": record["data"]["source"],
            "width": record["config"]["width"], "parameters": record.get("parameters"),
            "epochs": len(record["history"]), "lr_min": record["lr_min"], "lr_max": record["lr_max"],
            "lr_source": "found by the LR range test" if record["lr_source"] == "range test" else record["lr_source"],
            "hardware": report.describe_hardware(record), "commit": (record.get("code") or {}).get("git_commit")}


def default_data_name(record) -> str:
    d = record["data"]
    if d["source"] == "synthetic":
        return (f"{d['test_images']:,} held-out images of synthetic data of CIFAR-10's shape, which says nothing about "
                "CIFAR-10")
    if d.get("eval_split") == "validation":
        return f"a validation split of {d['test_images']:,} images held out from its training images"
    return f"the {d['test_images']:,} images of the CIFAR-10 test set"


def readme(about) -> str:
    """The Space's README.md: the Spaces header, then what the app does and the run's figures."""
    return f"""---
title: CIFAR-10 custom ResNet with Grad-CAM
emoji: 🔍
colorFrom: blue
colorTo: red
sdk: gradio
sdk_version: {GRADIO}
app_file: app.py
pinned: false
---

# CIFAR-10 custom ResNet: what does it see?

Upload a picture (or pick one of the 10 examples, one per CIFAR-10 class): the app shows the
model's top classes (how many: 1 to 10) and, with Grad-CAM on, where the model looked for each
of the top classes (how many, from which layer, with what opacity). It can also show the
misclassified held-out images of the training run (how many), each with its true and predicted
class and its Grad-CAM for the predicted class.

## The model

The custom ResNet ("ResNet-9") of David Page's *How to train your ResNet*, width {about['width']}
({about['parameters']:,} parameters), trained for {about['epochs']} epochs with a one-cycle schedule
(LRMIN {about['lr_min']:.4g}, LRMAX {about['lr_max']:.4g}: {about['lr_source']}) on
{about['hardware']}.

**Accuracy: {about['accuracy']:.2f}%** ({about['correct']:,} of {about['n']:,}) on {about['data']}.

It knows only CIFAR-10's 10 classes ({', '.join(CLASSES)}) at 32x32 pixels: a photo is cut to its
central square and shrunk to 32x32 before it is classified, so expect it to be wrong on most
pictures of anything else.

## What it does, control by control

| the course asks | the app |
|---|---|
| whether to see Grad-CAM images, and how many | "Show Grad-CAM"; "How many Grad-CAM images": maps for the top 1-10 classes |
| from which layer | a list of the network's parts, those whose map is at least 5x5 first, each with its map size |
| the opacity | "Grad-CAM opacity", 0 to 1 |
| whether to see misclassified images, and how many | "Show the run's misclassified images"; "How many" |
| upload new images, and 10 examples | the upload box, and 10 examples, one per class |
| how many top classes (at most 10) | "How many top classes", a slider from 1 to 10 |

Grad-CAM (Selvaraju et al., arXiv 1610.02391) weights a layer's feature maps by the gradient of
the class score (before the softmax) and keeps the positive part; red marks what raised that
class's score most. The app contains no training code: `app.py` and the inference modules beside it.
Made with `python -m app.export` from this training repository{f', commit {about["commit"][:12]}' if about.get('commit') else ''}.
"""


def export(run_dir, space_dir, data_name=None) -> dict:
    """Write the Space for the finished run in run_dir into space_dir (created, or an earlier export
    updated in place: its files replaced, its hidden ones such as .git kept; any other content
    refused). Returns space.json's content."""
    record, _ = finished_run(run_dir)
    kept = torch.load(os.path.join(run_dir, "images.pt"), weights_only=True)
    modules = modules_of(os.path.join(APP, "app.py"))
    leaked = {m[:-3] for m in modules} & TRAINING
    if leaked:                                                        # a guard on the app's imports
        raise UsageError(f"app.py would need the training code ({', '.join(sorted(leaked))}): not exported")
    written = {"app.py", "requirements.txt", "model.pt", "examples", "gallery.pt", "space.json", "README.md", *modules}
    if os.path.exists(space_dir) and not os.path.isdir(space_dir):
        raise UsageError(f"{space_dir} is a file: give a new or empty folder for the Space")
    earlier = os.path.exists(os.path.join(space_dir, "space.json"))      # an earlier export: its modules may differ
    ours = written | ({f for f in os.listdir(ROOT) if f.endswith(".py")} if earlier else set())
    others = sorted(f for f in os.listdir(space_dir) if f not in ours and not f.startswith(".")) \
        if os.path.isdir(space_dir) else []
    if others:
        raise UsageError(f"{space_dir} holds other files ({', '.join(others[:3])}): give a new or empty folder for "
                         "the Space, or an earlier export of it (whose files are replaced, its .git kept)")
    for name in sorted(ours - written) if earlier else ():                # modules an earlier export needed
        if os.path.isfile(os.path.join(space_dir, name)):
            os.remove(os.path.join(space_dir, name))
    if os.path.isdir(os.path.join(space_dir, "examples")):
        shutil.rmtree(os.path.join(space_dir, "examples"))            # an earlier export's: replaced whole
    os.makedirs(os.path.join(space_dir, "examples"))
    for name in ("app.py", "requirements.txt"):
        shutil.copy(os.path.join(APP, name), space_dir)
    for name in modules:
        shutil.copy(os.path.join(ROOT, name), space_dir)
    shutil.copy(os.path.join(run_dir, "model.pt"), space_dir)
    from PIL import Image
    for image, label in zip(kept["examples"]["images"], kept["examples"]["labels"]):
        name = f"{int(label)}_{CLASSES[int(label)]}.png"
        Image.fromarray(image.permute(1, 2, 0).numpy()).save(os.path.join(space_dir, "examples", name))
    wrong = kept["misclassified"]
    torch.save({k: wrong[k] for k in ("images", "labels", "predicted", "confidence")} | {"classes": kept["classes"]},
               os.path.join(space_dir, "gallery.pt"))
    about = space_json(record, data_name)
    utils.atomic_write_json(about, os.path.join(space_dir, "space.json"))
    utils.atomic_write_text(readme(about), os.path.join(space_dir, "README.md"))
    return about


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m app.export", description=__doc__.split("\n\n")[0])
    p.add_argument("run", help="the output folder of a finished run (train.py's --out-dir)")
    p.add_argument("space", help="the folder to write the Space into (new, or an earlier export)")
    p.add_argument("--data", default=None, help="what the held-out images are, for the page (default: from the "
                   "run's record, e.g. 'a validation split of 10,000 images held out from its training images')")
    p.add_argument("--serve", action="store_true", help="then serve the Space at http://127.0.0.1:7860 (Ctrl-C stops)")
    a = p.parse_args(argv)
    try:
        about = export(a.run, a.space, a.data)
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote the Space for {a.run} ({about['accuracy']:.2f}% on {about['data']}) into {a.space}: "
          + " ".join(sorted(os.listdir(a.space))))
    if a.serve:
        try:
            return subprocess.call([sys.executable, "app.py"], cwd=a.space)
        except KeyboardInterrupt:
            return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
