"""Torch files read back verified: the archive's checksums, tensors only, every value finite.

The one place a torch file is read (a checkpoint, a model.pt, the data cache, a run's images.pt,
a Space's gallery.pt): read_torch_file, torch.load(weights_only=True), so nothing in a file can
run code, after the zip archive's CRC-32 checksums (which torch.load does not check: one flipped
bit would load as a wrong weight). Inference needs only this module to read weights, so the web
app ships it without the trainer's checkpoint machinery. It also reads what a model.pt says of
its training (its provenance, written by train.py inside the file).
"""
import collections
import math
import os
import pickle
import re
import warnings
import zipfile

import torch

import utils
from utils import UsageError

FORMAT = "custom-resnet-cifar10 checkpoint v1"       # the tag of train.py's checkpoint.pt
PROVENANCE = "provenance"                            # its key in a model.pt's state_dict._metadata
PROVENANCE_FORMAT = "custom-resnet-cifar10 provenance v1"


def load_torch_file(path, label, what, advice):
    """torch.load(path) onto the CPU with weights_only=True: tensors and plain containers only,
    nothing in the file can run code. A missing file, a folder or an unreadable file is a
    UsageError: "<label>: no such file; <advice>" and the like (label names the file, e.g.
    "--resume out/checkpoint.pt"; what is the kind of file expected, e.g. "checkpoint")."""
    if not os.path.exists(path):
        raise UsageError(f"{label}: no such file; {advice}")
    if os.path.isdir(path):
        raise UsageError(f"{label} is a folder; {advice}")
    try:
        with warnings.catch_warnings():          # torch warns of odd pickles on stderr: the refusal is one line
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:   # truncated, corrupted, not a torch file, or holding code: do not use it
        raise UsageError(f"{label}: not a readable {what} ({_why_unreadable(path, e)}); {advice}") from None


def _why_unreadable(path, e) -> str:
    """What torch.load's error means, in one line. Not its weights_only refusal as it stands: it
    says that loading with weights_only=False would likely succeed, which would run the code."""
    if os.path.isfile(path) and not zipfile.is_zipfile(path):
        with open(path, "rb") as f:
            cut = f.read(4) == b"PK\x03\x04"         # a zip archive's start, without its end
        return "cut short: its zip archive has no end" if cut else "not a torch file: torch.save writes a zip archive"
    text = str(e)
    if isinstance(e, pickle.UnpicklingError) and "Weights only load failed" in text:
        found = re.search(r"WeightsUnpickler error:\s*(.+)", text) or re.search(r"(Trying to load unsupported.+)", text)
        detail = found.group(1).split(". ")[0].strip()[:150] if found else "a pickled object"
        return f"it holds more than tensors ({detail}); nothing in it was run"
    return f"{type(e).__name__}: {utils.first_line(e)}"


def read_torch_file(path, what, advice, label=None):
    """The object in the torch file at `path`, read verified: its archive's checksums
    (check_archive), then load_torch_file. label names the file in messages (path by default)."""
    label = label or path
    if os.path.isfile(path):
        check_archive(path, label, advice)
    return load_torch_file(path, label, what, advice)


def check_archive(path, label, advice):
    """A torch file is a zip archive whose members carry CRC-32 checksums, which torch.load does
    not check: a flipped bit would load as a wrong weight. UsageError naming the damaged member."""
    if not zipfile.is_zipfile(path):
        return                               # not an archive: torch.load says what it is
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()          # reads every member and checks its CRC-32
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        raise UsageError(f"{label}: a damaged file ({utils.first_line(e)}); {advice}") from None
    if bad is not None:
        raise UsageError(f"{label}: a damaged file (the checksum of {bad} does not match: a flipped bit or a "
                         f"broken copy); {advice}")


def first_non_finite(named_tensors) -> str:
    """The name of the first floating-point tensor holding NaN or inf, or "" when all are finite.
    named_tensors: {name: tensor} or nested dicts of them (an optimizer's state)."""
    flat = {}

    def walk(prefix, value):
        if isinstance(value, torch.Tensor):
            if value.is_floating_point():
                flat[prefix] = value
        elif isinstance(value, dict):
            for k, v in value.items():
                walk(f"{prefix}.{k}" if prefix else str(k), v)
    walk("", named_tensors)
    if not flat:
        return ""
    device = next(iter(flat.values())).device
    finite = torch.stack([torch.isfinite(t).all().to(device) for t in flat.values()])    # on the device...
    if bool(finite.all()):                                                                # ...read once
        return ""
    return list(flat)[int((~finite).nonzero()[0])]


def read_weights(path, use) -> dict:
    """The state_dict in a model.pt, verified like a checkpoint (checksums, weights_only, every
    value finite); UsageError saying `use` (what to give instead) otherwise."""
    state = read_torch_file(path, "weights file", use)
    if isinstance(state, dict) and state.get("format") == FORMAT:
        beside = os.path.join(os.path.dirname(path), "model.pt")
        raise UsageError(f"{path} is a training checkpoint (for python train.py --resume); give the "
                         f"weights written beside it: {beside}")
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UsageError(f"{path}: not a state_dict of weights; {use}")
    bad = first_non_finite(state)
    if bad:
        raise UsageError(f"{path}: broken weights ({bad} holds NaN or inf): they cannot classify; {use}")
    return state


# ----------------------------------------------------------------------------------------------
# Provenance: what a model.pt was trained on, inside the file itself
#
## Why in the state_dict's _metadata: a state_dict is an OrderedDict whose `_metadata` attribute
## (each module's version) torch.save and torch.load, weights_only included, carry with it, and
## load_state_dict reads only the entries of its modules. So the provenance travels wherever the
## file is copied (a Space, a student's folder), is covered by the archive's checksums, cannot
## describe other weights than its own, and model.load_state_dict(torch.load("model.pt")) works
## as with a bare state_dict. A file beside model.pt would be lost in a copy or left stale.

def with_provenance(state, provenance) -> collections.OrderedDict:
    """The state_dict `state` (tensors unchanged, its modules' versions kept) carrying `provenance`
    (a dict of text, numbers and lists: what provenance_problem checks) in its _metadata."""
    out = collections.OrderedDict(state)
    meta = collections.OrderedDict(getattr(state, "_metadata", None) or {})
    meta[PROVENANCE] = {"format": PROVENANCE_FORMAT, **provenance}
    out._metadata = meta
    return out


def is_number(v, low=-math.inf, high=math.inf) -> bool:
    """A finite int or float in low..high (True, NaN and "3" are not numbers here): a field of a
    record or a provenance read back from a file."""
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and low <= v <= high


def is_count(v, low=0) -> bool:
    """An int (not a bool) of at least `low`."""
    return isinstance(v, int) and not isinstance(v, bool) and v >= low


def is_class_names(v) -> bool:
    """A list of the 10 class names, as a file of this project records them."""
    return isinstance(v, list) and len(v) == 10 and all(isinstance(c, str) for c in v)


# Each field of a provenance: (what it must be, its check).
PROVENANCE_FIELDS = {
    "format": (PROVENANCE_FORMAT, lambda v: v == PROVENANCE_FORMAT),
    "source": ("cifar10 or synthetic", lambda v: v in ("cifar10", "synthetic")),
    "train_images": ("a count", is_count),
    "split": ("test or validation", lambda v: v in ("test", "validation")),
    "accuracy": ("a percentage", lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)
                 and math.isfinite(v) and 0 <= v <= 100),
    "correct": ("a count", is_count),
    "n": ("a count of at least 1", lambda v: is_count(v, 1)),
    "width": ("a width of at least 1", lambda v: is_count(v, 1)),
    "epochs": ("a count", is_count),
    "classes": ("the names of the 10 outputs", is_class_names),
    "commit": ("a git commit or null", lambda v: v is None or isinstance(v, str)),
}


def provenance(state):
    """(provenance, problem) of a state_dict read back: (the dict, "") when it carries one as
    with_provenance writes it; (None, "") when it carries none (a model.pt written before
    provenance was, or by other code); (None, what is wrong) for one that is not as written."""
    found = (getattr(state, "_metadata", None) or {}).get(PROVENANCE)
    if found is None:
        return None, ""
    if not isinstance(found, dict):
        return None, f"its provenance is a {type(found).__name__}, not a dict"
    for name, (want, ok) in PROVENANCE_FIELDS.items():
        if not ok(found.get(name)):
            return None, f"its provenance's {name!r} is {'missing' if name not in found else repr(found[name])[:40]}, " \
                         f"not {want}"
    return found, ""


def describe_provenance(found, problem="") -> str:
    """What a model.pt was trained on, in a few words: "trained on CIFAR-10 (40,000 images):
    88.92% on a validation split of 10,000, commit 1a2b3c4d5e6f", or "provenance unknown: ..."
    (found, problem: what provenance returned)."""
    if found is None:
        return f"provenance unknown: {problem}" if problem else "provenance unknown: not recorded in this file"
    data = "synthetic data" if found["source"] == "synthetic" else "CIFAR-10"
    held = (f"{found['n']:,} held-out synthetic images" if found["source"] == "synthetic" else
            f"the {found['n']:,} test images" if found["split"] == "test" else f"a validation split of {found['n']:,}")
    commit = f", commit {found['commit'][:12]}" if found["commit"] else ""
    return f"trained on {data} ({found['train_images']:,} images): {found['accuracy']:.2f}% on {held}{commit}"


def synthetic_warning(path, found) -> str:
    """One line for a model trained on synthetic data ("" otherwise): its answers mean nothing."""
    if found is None or found["source"] != "synthetic":
        return ""
    return f"warning: {path} was trained on synthetic data: its answers say nothing about real images"


# What each field of a file of labelled images holds (a run's images.pt, a Space's gallery.pt).
IMAGE_FIELDS = {"images": "uint8 images of shape (N, 3, 32, 32)", "labels": "one class 0..9 per image (int64)",
                "predicted": "one class 0..9 per image (int64)", "index": "one index >= 0 per image (int64)",
                "confidence": "one probability in [0, 1] per image"}


def _field_ok(name, t, n) -> bool:
    if not isinstance(t, torch.Tensor) or (n is not None and len(t) != n):
        return False
    if name == "images":
        return t.dtype == torch.uint8 and t.dim() == 4 and tuple(t.shape[1:]) == (3, 32, 32)
    if t.dim() != 1:
        return False
    if name == "confidence":                     # NaN fails both comparisons: refused
        return t.is_floating_point() and bool(((t >= 0) & (t <= 1)).all())
    high = None if name == "index" else 9
    return t.dtype == torch.int64 and bool((t >= 0).all()) and (high is None or bool((t <= high).all()))


def read_images(path, sections, advice, label=None) -> dict:
    """A file of labelled images read verified (read_torch_file), then checked: a dict with
    "classes" (10 names) and, for each {section: fields} of `sections` ("" for the top level),
    the fields of IMAGE_FIELDS, all of one length. UsageError naming the field otherwise."""
    label = label or path
    found = read_torch_file(path, "file of images", advice, label)
    if not is_class_names(found.get("classes") if isinstance(found, dict) else None):
        raise UsageError(f"{label}: not a file of labelled images (no list of 10 class names); {advice}")
    for section, fields in sections.items():
        part = found.get(section) if section else found
        n = None
        for name in fields:
            where = f"{section}.{name}" if section else name
            t = part.get(name) if isinstance(part, dict) else None
            if not _field_ok(name, t, n):
                raise UsageError(f"{label}: its {where!r} is not {IMAGE_FIELDS[name]}"
                                 + (f" (for {n} images)" if n is not None else "") + f"; {advice}")
            n = len(t)
    return found
