"""Export a finished run as a Hugging Face Space, ready to push; --serve starts it on 127.0.0.1.

    python -m app.export out space                # out: a finished run's folder; space: the Space to write
    python -m app.export out space --serve        # the same, then serve it at http://127.0.0.1:7860
                                                  # (GRADIO_SERVER_PORT=8000 for another port)
    python -m app.export out space --data "the validation split of JPEG copies of CIFAR-10 training images"

The Space holds app.py and the modules it imports (the inference code: no training code, no data
download), its requirements.txt, the run's weights (read with weights_only and verified), 10
example images (one per class) and the run's misclassified held-out images with their labels
(from the run's images.pt, so the gallery needs no data set), space.json (what the run measured)
and README.md, the Space's page, with the Spaces header and the run's figures. Push the folder to
a Space (`git push` to huggingface.co/spaces/<you>/<name>) and it runs there on a CPU. Exported
again into the same folder, it says what the earlier export held. --serve runs the Space's app.py
until it ends; a SIGTERM (or SIGHUP) to this command is passed on to it, so the server stops too.
"""
import argparse
import ast
import errno
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading

import torch

import checkpoint
import report
import utils
import weights
from app.app import GALLERY, read_about
from custom_resnet import CLASSES
from utils import UsageError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
APP = os.path.join(ROOT, "app")
TRAINING = {"train", "settings", "series", "lr_finder", "report", "data", "bench", "checkpoint"}    # never in a Space
GRADIO = "6.31.0"          # the version app.py was written and tested with (the Spaces header's sdk_version)
IMAGES_PT = {"misclassified": ("index", "images", "labels", "predicted", "confidence"),     # a run's images.pt
             "examples": ("index", "images", "labels")}


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
    """(record, checkpoint, kept images) of a finished run's folder, each read verified, the record
    checked against the checkpoint (the figures a Space publishes are the checkpoint's, never an
    edited metrics.json's) and model.pt against the checkpoint's last weights; UsageError naming
    what is missing or wrong, and a command that would work."""
    metrics, ckpt_path = os.path.join(run_dir, "metrics.json"), os.path.join(run_dir, "checkpoint.pt")
    resume = f"python train.py --resume {ckpt_path}"
    rewrite, rewrite_them = (f"write {it} again from the run's checkpoint: {resume}" for it in ("it", "them"))
    if not os.path.isdir(run_dir):
        raise UsageError(f"{run_dir}: no such folder; give the output folder of a finished run (train.py's --out-dir)")
    try:
        record = checkpoint.read_record(metrics, rewrite if os.path.isfile(ckpt_path) else
                                        "give the output folder of a finished run")
    except FileNotFoundError:
        raise UsageError(f"{run_dir} holds no run (no metrics.json): give the output folder of a finished run") from None
    if not os.path.isfile(ckpt_path):
        raise UsageError(f"{run_dir} has no checkpoint.pt, against which the figures a Space publishes are "
                         "checked: copy the run's checkpoint.pt back into it, or export a finished run that has one")
    if record["status"] != "complete":
        raise UsageError(f"{run_dir} holds a run that is {record['status']}, not finished: finish it first ({resume})")
    ckpt = checkpoint.read_checkpoint(ckpt_path, ckpt_path, "copy the run's own checkpoint.pt back, or export "
                                      "another run")
    differ = [k for k in ("history", "lr_min", "lr_max", "lr_source") if record[k] != ckpt[k]]
    differ += [f"config.{k}" for k in ("width", "synthetic", "epochs") if record["config"].get(k) != ckpt["config"][k]]
    differ += ["data.source"] * ((record["data"]["source"] == "synthetic") != ckpt["config"]["synthetic"])
    if differ:
        raise UsageError(f"{metrics} does not agree with the run's checkpoint (in {', '.join(differ)}): an edited "
                         f"or another run's record, whose figures a Space must not publish; {rewrite}")
    path = os.path.join(run_dir, "model.pt")
    if not os.path.isfile(path):
        raise UsageError(f"{run_dir} has no model.pt: the run's weights are missing; {rewrite_them}")
    trained_weights = weights.read_weights(path, "give the model.pt of a finished run")
    width, trained = ckpt["config"]["width"], trained_weights.get("prep.conv.weight")
    if trained is None or trained.shape[0] != width:
        found = "no prep.conv.weight" if trained is None else f"width {trained.shape[0]}"
        raise UsageError(f"{path} is a model of {found}, but the run's record says width {width}: the weights are "
                         "not this run's; copy the run's own model.pt back, or export the run it came from")
    last = ckpt.get("average") or ckpt["model"]             # what model.pt keeps: the weight average, if any
    if trained_weights.keys() != last.keys() or not all(torch.equal(trained_weights[k], last[k]) for k in last):
        raise UsageError(f"{path} is not the weights of the run's last epoch (its checkpoint holds others), so the "
                         f"run's accuracy is not theirs; {rewrite_them}")
    found, _ = weights.provenance(trained_weights)        # the provenance the Space's model.pt carries
    if found is not None and (found["source"], found["accuracy"], found["width"]) != (
            record["data"]["source"], ckpt["history"][-1]["test_acc"], width):
        raise UsageError(f"{path}: its provenance ({found['source']}, {found['accuracy']:.2f}%, width {found['width']}) "
                         f"is not the run's: an altered model.pt, which a Space must not publish; {rewrite_them}")
    images = os.path.join(run_dir, "images.pt")
    if not os.path.isfile(images):
        raise UsageError(f"{run_dir} has no images.pt (the images the app shows); {rewrite}")
    kept = weights.read_images(images, IMAGES_PT, rewrite)
    return record, ckpt, kept


def space_json(record, ckpt, data_name, run_dir):
    """What the Space's page says: the accuracy, the LRs and the epochs from the verified checkpoint
    (its last epoch: the weights model.pt holds), the rest from the record (checked against it);
    "run", the run folder's name (not its path, which the Space would publish)."""
    last = ckpt["history"][-1]
    return {"run": os.path.basename(os.path.normpath(os.path.abspath(run_dir))), "accuracy": last["test_acc"], "correct": last["test_correct"], "n": last["test_n"],
            "split": report.data_label(record), "data": data_name or default_data_name(record),
            "source": record["data"]["source"], "width": ckpt["config"]["width"], "parameters": record["parameters"],
            "epochs": len(ckpt["history"]), "lr_min": ckpt["lr_min"], "lr_max": ckpt["lr_max"],
            "lr_source": "found by the LR range test" if ckpt["lr_source"] == "range test" else ckpt["lr_source"],
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
    synthetic = ("\n**Warning: this model was trained on synthetic data: its answers say nothing about real "
                 "images.**\n" if about["source"] == "synthetic" else "")
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
{synthetic}
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
    """Write the Space for the finished run in run_dir into space_dir: a new folder, or an earlier
    export, whose files are all replaced but its hidden ones (its .git); a folder holding anything
    else is refused. The Space is written beside space_dir first and swapped in only when whole,
    so a failure (a full disk) leaves space_dir as it was. Returns space.json's content."""
    record, ckpt, kept = finished_run(run_dir)
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
    about = space_json(record, ckpt, data_name, run_dir)
    existed, new = os.path.isdir(space_dir), None
    try:
        new = _beside(space_dir)
        _write_space(new, run_dir, kept, modules, about)
        _swap_in(new, space_dir)
    except OSError as e:
        why = e.strerror or utils.first_line(e)
        then = "free some space and export again" if e.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT) else \
            "export again once that is fixed"
        raise UsageError(f"could not write the Space ({why}): {space_dir} "
                         f"{'is as it was' if existed else 'was not made'}; {then}") from None
    finally:
        if new and os.path.isdir(new):
            shutil.rmtree(new, ignore_errors=True)
    return about


def _beside(space_dir) -> str:
    """A new hidden folder beside space_dir, on the same file system (so that it can be renamed
    into place), with the mode space_dir has (or a new folder's)."""
    parent = os.path.dirname(os.path.abspath(space_dir))
    os.makedirs(parent, exist_ok=True)
    new = tempfile.mkdtemp(dir=parent, prefix=f".{os.path.basename(os.path.abspath(space_dir))}.new-")
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(new, stat.S_IMODE(os.stat(space_dir).st_mode) if os.path.isdir(space_dir) else 0o777 & ~umask)
    return new


def _write_space(folder, run_dir, kept, modules, about):
    """Every file of the Space into `folder`, a new one."""
    from PIL import Image
    os.makedirs(os.path.join(folder, "examples"))
    for name in ("app.py", "requirements.txt"):
        shutil.copy(os.path.join(APP, name), folder)
    for name in modules:
        shutil.copy(os.path.join(ROOT, name), folder)
    shutil.copy(os.path.join(run_dir, "model.pt"), folder)
    for image, label in zip(kept["examples"]["images"], kept["examples"]["labels"]):
        name = f"{int(label)}_{CLASSES[int(label)]}.png"
        Image.fromarray(image.permute(1, 2, 0).numpy()).save(os.path.join(folder, "examples", name))
    wrong = kept["misclassified"]
    utils.atomic_torch_save({k: wrong[k] for k in GALLERY} | {"classes": kept["classes"]},
                            os.path.join(folder, "gallery.pt"))
    utils.atomic_write_json(about, os.path.join(folder, "space.json"))
    utils.atomic_write_text(readme(about), os.path.join(folder, "README.md"))


def _swap_in(new, space_dir):
    """The whole Space `new` in place of space_dir, the old one's hidden files (its .git) moved
    into it first: renames in one folder, none of which needs space; undone if one fails."""
    if not os.path.exists(space_dir):
        os.rename(new, space_dir)
        return
    parent, name = os.path.split(new)
    old = os.path.join(parent, name.replace(".new-", ".old-", 1))
    moved = []
    try:
        for hidden in sorted(f for f in os.listdir(space_dir) if f.startswith(".")):
            os.rename(os.path.join(space_dir, hidden), os.path.join(new, hidden))
            moved.append(hidden)
        os.rename(space_dir, old)
        os.rename(new, space_dir)
    except BaseException:
        if not os.path.exists(space_dir) and os.path.isdir(old):
            os.rename(old, space_dir)
        for hidden in moved:
            os.rename(os.path.join(new, hidden), os.path.join(space_dir, hidden))
        raise
    shutil.rmtree(old, ignore_errors=True)


def earlier_export(space_dir, run_dir) -> str:
    """What an earlier export in space_dir holds, in words ("" when there is none): its run, model
    and accuracy from its space.json, and whether its weights are those of run_dir's model.pt."""
    if not os.path.isfile(os.path.join(space_dir, "space.json")):
        return ""
    try:
        old = read_about(os.path.join(space_dir, "space.json"), "")
    except UsageError:
        return "a Space whose space.json cannot be read"
    run = f"run {old['run']!r}, " if isinstance(old.get("run"), str) else ""
    commit = f", commit {old['commit'][:12]}" if isinstance(old.get("commit"), str) else ""
    same = _same_bytes(os.path.join(space_dir, "model.pt"), os.path.join(run_dir, "model.pt"))
    return (f"{run}width {old.get('width')}, {old.get('epochs')} epochs, {old['accuracy']:.2f}% on {old['data']}"
            f"{commit}; {'the same weights as' if same else 'other weights than'} {os.path.join(run_dir, 'model.pt')}")


def _same_bytes(a, b) -> bool:
    try:
        with open(a, "rb") as f, open(b, "rb") as g:
            return f.read() == g.read()
    except OSError:
        return False


def serve(space_dir) -> int:
    """Run the Space's app.py until it ends; its exit status (128 + the signal's number when a
    signal ended it). The server is a process of its own: a SIGTERM or SIGHUP to this one is
    passed on to it, else it would go on serving after this command had stopped."""
    proc = subprocess.Popen([sys.executable, "app.py"], cwd=space_dir)
    passed_on = [getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name)]
    previous = {}
    if threading.current_thread() is threading.main_thread():           # signal handlers live there
        previous = {sig: signal.signal(sig, lambda signum, frame: proc.send_signal(signum)) for sig in passed_on}
    try:
        try:
            code = proc.wait()
        except KeyboardInterrupt:          # Ctrl-C in a terminal reaches the server too: let it close
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.terminate()
            code = 130
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if proc.poll() is None:            # this command stops: never leave the server behind
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    return 128 - code if code < 0 else code


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m app.export", description=__doc__.split("\n\n")[0])
    p.add_argument("run", help="the output folder of a finished run (train.py's --out-dir)")
    p.add_argument("space", help="the folder to write the Space into (new, or an earlier export)")
    p.add_argument("--data", default=None, help="what the held-out images are, for the page (default: from the "
                   "run's record, e.g. 'a validation split of 10,000 images held out from its training images')")
    p.add_argument("--serve", action="store_true", help="then serve the Space at http://127.0.0.1:7860 (the port: "
                   "GRADIO_SERVER_PORT; Ctrl-C or SIGTERM stops it)")
    a = p.parse_args(argv)
    earlier = earlier_export(a.space, a.run) if os.path.isdir(a.space) else ""
    try:
        about = export(a.run, a.space, a.data)
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if earlier:
        print(f"replaced the earlier export in {a.space}: {earlier}")
    print(f"wrote the Space for {a.run} ({about['accuracy']:.2f}% on {about['data']}) into {a.space}: "
          + " ".join(sorted(os.listdir(a.space))), flush=True)
    return serve(a.space) if a.serve else 0


if __name__ == "__main__":
    sys.exit(main())
