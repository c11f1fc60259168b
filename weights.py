"""Torch files read back verified: the archive's checksums, tensors only, every value finite.

The one place a checkpoint, a model.pt or the data cache is read: torch.load(weights_only=True),
so nothing in a file can run code, after the zip archive's CRC-32 checksums (which torch.load does
not check: one flipped bit would load as a wrong weight). Inference needs only this module to
read weights, so the web app ships it without the trainer's checkpoint machinery.
"""
import os
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
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:   # truncated, corrupted, not a torch file, or holding code: do not use it
        raise UsageError(f"{label}: not a readable {what} ({type(e).__name__}: {utils.first_line(e)}); "
                         f"{advice}") from None


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
    if os.path.isfile(path):
        check_archive(path, path, use)
    state = load_torch_file(path, path, "weights file", use)
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
