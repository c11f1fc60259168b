"""Torch files read back verified: the archive's checksums, tensors only, every value finite.

The one place a torch file is read (a checkpoint, a model.pt, the data cache, a run's images.pt,
a Space's gallery.pt): read_torch_file, torch.load(weights_only=True), so nothing in a file can
run code, after the zip archive's CRC-32 checksums (which torch.load does not check: one flipped
bit would load as a wrong weight). Inference needs only this module to read weights, so the web
app ships it without the trainer's checkpoint machinery.
"""
import os
import pickle
import re
import warnings
import zipfile

import torch

import utils
from utils import UsageError

FORMAT = "custom-resnet-cifar10 checkpoint v1"       # the tag of train.py's checkpoint.pt


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
    classes = found.get("classes") if isinstance(found, dict) else None
    if not (isinstance(classes, list) and len(classes) == 10 and all(isinstance(c, str) for c in classes)):
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
