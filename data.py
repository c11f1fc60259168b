"""CIFAR-10 as tensors on the device, and augmentation of whole batches by index arithmetic.

    data = load_cifar10("./data")                    # uint8 (N, 3, 32, 32), int64 labels
    train = DeviceLoader(data.train_images, data.train_labels, 512, train=True, device="cuda")
    for x, y in train: ...                           # x: (512, 3, 32, 32) normalised float32

No DataLoader workers and no per-image Python: the whole set is loaded once (184 MB as
uint8), and random crop, flip and Cutout are applied to a whole batch with one gather and one
mask, as in airbench and Page's cifar10-fast.
"""
import copy
import errno
import hashlib
import os
import pickle
import tarfile
import tempfile
from typing import NamedTuple

import numpy as np
import torch

from custom_resnet import CIFAR10_MEAN, CIFAR10_STD, CLASSES   # the network's input and classes
from utils import UsageError, atomic_torch_save, first_line
from weights import is_class_names, read_torch_file

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"   # the official archive's MD5
CIFAR10_FOLDER = "cifar-10-batches-py"
TRAIN_FILES = [f"data_batch_{i}" for i in range(1, 6)]
TEST_FILES = ["test_batch"]
CACHE_NAME = "cifar10_uint8.pt"


class Cifar10(NamedTuple):
    train_images: torch.Tensor   # uint8 (N, 3, 32, 32)
    train_labels: torch.Tensor   # int64 (N,)
    test_images: torch.Tensor    # uint8 (M, 3, 32, 32)
    test_labels: torch.Tensor    # int64 (M,)
    classes: tuple
    # What the held-out images are, for every log line, plot and record that reports on them:
    # "test" (the official test_batch) or "validation" (a split of the training images, such as
    # the one ../shared/data/cifar10_jpeg.py writes as test_batch). See eval_split_name.
    eval_split: str = "test"


# ----------------------------------------------------------------------------------------------
# Reading the python-format batch files, safely

def _numpy_reconstruct():
    # numpy 2 moved numpy.core to numpy._core; pickles name either, depending on who wrote them.
    core = getattr(np, "_core", None) or np.core
    return core.multiarray._reconstruct


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickles only what a CIFAR batch holds: dicts, lists, strings, numbers, numpy arrays.

    A pickle can name any importable function and call it while loading (`os.system`, ...).
    The batch files come from a download or a folder of unknown origin, so every global is
    refused except the few that rebuild a numpy array.
    """

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"): _numpy_reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): _numpy_reconstruct,
        ("numpy", "ndarray"): lambda: np.ndarray,
        ("numpy", "dtype"): lambda: np.dtype,
        # Python 3 writes bytes as _codecs.encode(str, "latin1") in pickle protocols < 3, and
        # empty bytes (an empty array's data) as bytes(): both only make bytes.
        ("_codecs", "encode"): lambda: __import__("codecs").encode,
        ("__builtin__", "bytes"): lambda: bytes,
        ("builtins", "bytes"): lambda: bytes,
    }

    def find_class(self, module, name):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"global '{module}.{name}' is not allowed in a CIFAR batch")
        return self.ALLOWED[(module, name)]()


def read_batch(path):
    """Read one CIFAR-10 python batch file -> (uint8 images (N, 3, 32, 32), int64 labels (N,)).
    See _read_batch_and_label."""
    return _read_batch_and_label(path)[:2]


def eval_split_name(batch_label) -> str:
    """"validation" when a test_batch's 'batch_label' says it is a validation split (the official
    file says "testing batch 1 of 1"; cifar10_jpeg.py writes "validation split"), else "test"."""
    return "validation" if "validation" in str(batch_label).lower() else "test"


def _read_batch_and_label(path):
    """One CIFAR-10 python batch file -> (uint8 images (N, 3, 32, 32), int64 labels (N,), the
    file's 'batch_label' string or "" when it has none).

    Keys may be str or bytes (the original files were pickled by Python 2; read with latin1 they
    come back as str, files written by Python 3 often use bytes). Everything is validated, and
    any problem is a UsageError that names the file.
    """
    try:
        with open(path, "rb") as f:
            raw = _RestrictedUnpickler(f, encoding="latin1").load()
    except FileNotFoundError:
        raise
    except Exception as e:   # truncated, corrupted, hostile: all mean "do not use this file"
        raise UsageError(f"{path}: not a readable CIFAR-10 batch file ({type(e).__name__}: {e}). "
                         "Delete it and download the data again.") from e
    if not isinstance(raw, dict):
        raise UsageError(f"{path}: expected a dict in a CIFAR-10 batch file, found {type(raw).__name__}")
    batch = {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in raw.items()}
    if "data" not in batch or "labels" not in batch:
        raise UsageError(f"{path}: a CIFAR-10 batch needs the keys 'data' and 'labels'; "
                         f"found {sorted(map(str, batch))}")
    data, labels = batch["data"], batch["labels"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        desc = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise UsageError(f"{path}: 'data' must be a uint8 array of shape (N, 3072), found {desc}")
    if isinstance(labels, np.ndarray):
        whole = labels.dtype.kind in "iu"
    else:
        whole = isinstance(labels, (list, tuple)) and all(
            isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_)) for v in labels)
    if not whole:
        kinds = sorted({type(v).__name__ for v in labels}) if isinstance(labels, (list, tuple)) else [
            getattr(labels, "dtype", type(labels).__name__)]
        raise UsageError(f"{path}: 'labels' must be whole numbers 0..9, found {', '.join(map(str, kinds))}: "
                         "a float 9.9 would silently become class 9; fix the file or download the data again")
    labels = np.asarray(labels, dtype=np.int64)
    if labels.shape != (data.shape[0],):
        raise UsageError(f"{path}: {data.shape[0]} images but labels of shape {labels.shape}")
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise UsageError(f"{path}: labels must lie in 0..9, found {labels.min()}..{labels.max()}")
    # Rows are 1024 red, 1024 green, 1024 blue values, each a 32x32 image in row-major order.
    images = torch.from_numpy(data.reshape(-1, 3, 32, 32).copy())
    label = batch.get("batch_label", "")
    return images, torch.from_numpy(labels), label.decode("latin1") if isinstance(label, bytes) else str(label)


def _read_classes(folder):
    path = os.path.join(folder, "batches.meta")
    if not os.path.exists(path):
        return CLASSES
    try:
        with open(path, "rb") as f:
            meta = _RestrictedUnpickler(f, encoding="latin1").load()
        names = meta.get("label_names", meta.get(b"label_names"))
        names = tuple(n.decode() if isinstance(n, bytes) else str(n) for n in names)
        return names if len(names) == 10 else CLASSES
    except Exception as e:
        raise UsageError(f"{path}: not a readable CIFAR-10 meta file ({e}). "
                         "Delete it and download the data again.") from e


# ----------------------------------------------------------------------------------------------
# Download

def _digest(path, algorithm="md5", chunk=1 << 20):
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def download_cifar10(root):
    """Download and unpack the official archive into root; a file whose MD5 differs is deleted."""
    from torchvision.datasets.utils import download_url   # import here: only a download needs it
    archive = os.path.join(root, os.path.basename(CIFAR10_URL))
    try:
        if not os.path.exists(archive):
            download_url(CIFAR10_URL, root)
    except Exception as e:
        if os.path.exists(archive):
            os.remove(archive)
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):   # not the network
            raise UsageError(f"could not write the download into {root} ({e.strerror}): free some space (about "
                             "350 MB: the 163 MB archive and the 180 MB it unpacks to) and run again") from None
        raise UsageError(
            f"could not download CIFAR-10 from {CIFAR10_URL} into {root} ({type(e).__name__}: {first_line(e)}). "
            f"Without internet, copy the folder '{CIFAR10_FOLDER}' (from cifar-10-python.tar.gz) "
            f"into {root}, or run offline with --synthetic.") from e
    if _digest(archive) != CIFAR10_MD5:
        os.remove(archive)
        raise UsageError(f"{archive} did not have the official MD5 {CIFAR10_MD5} and was deleted; "
                         "run again to download it afresh.")
    try:     # unpacked beside, then moved in: a full disk leaves no batch file cut short
        with tarfile.open(archive, "r:gz") as tar, tempfile.TemporaryDirectory(dir=root, prefix=".unpacking-") as tmp:
            wanted = [m for m in tar.getmembers()
                      if m.isfile() and m.name.startswith(CIFAR10_FOLDER + "/")]
            # filter="data" refuses links and paths that escape root (PEP 706), where Python has it.
            kwargs = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
            tar.extractall(tmp, members=wanted, **kwargs)
            os.makedirs(os.path.join(root, CIFAR10_FOLDER), exist_ok=True)
            for m in wanted:
                os.replace(os.path.join(tmp, m.name), os.path.join(root, m.name))
    except OSError as e:
        raise UsageError(f"could not unpack {archive} into {root} ({e.strerror or e}): no batch file was left "
                         "half-written; free some space (180 MB) and run again") from None


# ----------------------------------------------------------------------------------------------
# Loading, with a cache of decoded tensors

def load_cifar10(root="./data", download=True, cache=True) -> Cifar10:
    """CIFAR-10 from `root/cifar-10-batches-py` as uint8 tensors, downloading it if allowed.

    The decoded tensors are cached in `root/cifar10_uint8.pt` with the size and SHA-256 of every
    batch file they came from; the cache is used only when it is whole (its archive's
    checksums), valid as the batch files are (shapes, dtypes, labels 0..9) and made from the very
    files now in the folder; else it is rebuilt. Read with weights_only=True, so it can hold only
    tensors. Counts are not fixed: smaller files in the same format load too. Raises UsageError
    with what to do when the data is missing or broken.
    """
    root = os.path.expanduser(str(root))
    folder = os.path.join(root, CIFAR10_FOLDER)
    paths = [os.path.join(folder, name) for name in TRAIN_FILES + TEST_FILES]
    missing = [p for p in paths if not os.path.exists(p)]
    if missing and download:
        os.makedirs(root, exist_ok=True)
        download_cifar10(root)
        missing = [p for p in paths if not os.path.exists(p)]
    if missing:
        raise UsageError(
            f"CIFAR-10 not found: {len(missing)} of the batch files are missing from {folder} "
            f"(first: {os.path.basename(missing[0])}). Allow the download (download=True, the "
            f"default) with internet access, or put the folder '{CIFAR10_FOLDER}' from "
            f"cifar-10-python.tar.gz into {root}, or run offline with --synthetic.")
    files = fingerprint(folder)
    cache_path = os.path.join(root, CACHE_NAME)
    cached = read_cache(cache_path, files) if cache else None
    if cached is not None:
        return cached
    train = [read_batch(p) for p in paths[:len(TRAIN_FILES)]]
    test_x, test_y, test_label = _read_batch_and_label(paths[-1])
    if len(test_y) == 0:
        raise UsageError(f"{paths[-1]} holds no images: there is nothing to evaluate on. Put the 10,000 test "
                         "images there (the official test_batch), or a validation split of the training images")
    data = Cifar10(torch.cat([x for x, _ in train]), torch.cat([y for _, y in train]),
                   test_x, test_y, _read_classes(folder), eval_split_name(test_label))
    if cache:
        try:                              # atomic: a half-written cache is never read
            atomic_torch_save({**data._asdict(), "classes": list(data.classes), "files": files}, cache_path)
        except OSError:                   # a read-only data folder only costs the cache
            pass
    return data


def fingerprint(folder) -> dict:
    """{file name: [size in bytes, SHA-256 of the content]} of the batch files and batches.meta:
    what ties a cache to the files it was built from. The content, not the modification time: a
    file replaced by another of the same size, its time set back, is caught (about 0.25 s for
    CIFAR-10's 180 MB, against 3 s to decode the files again)."""
    names = TRAIN_FILES + TEST_FILES + ["batches.meta"]
    return {n: [os.path.getsize(os.path.join(folder, n)), _digest(os.path.join(folder, n), "sha256")]
            for n in names if os.path.exists(os.path.join(folder, n))}


def read_cache(path, files):
    """The cached Cifar10 at `path`, or None when it is missing, damaged, malformed or made from
    other files than `files` (see fingerprint): a cache is only a shortcut, never trusted over the
    batch files."""
    if not os.path.exists(path):
        return None
    try:
        d = read_torch_file(path, "cache", "")
        ok = (isinstance(d, dict) and d.get("files") == files and d.get("eval_split") in ("test", "validation")
              and is_class_names(d.get("classes")))
        for x, y in ((d["train_images"], d["train_labels"]), (d["test_images"], d["test_labels"])) if ok else ():
            ok = ok and (x.dtype == torch.uint8 and x.dim() == 4 and tuple(x.shape[1:]) == (3, 32, 32)
                         and y.dtype == torch.int64 and y.shape == (len(x),)
                         and (not len(y) or (int(y.min()) >= 0 and int(y.max()) <= 9)))
        if not ok or not len(d["test_labels"]):
            return None
        return Cifar10(d["train_images"], d["train_labels"], d["test_images"], d["test_labels"],
                       tuple(d["classes"]), d["eval_split"])
    except Exception:                      # damaged, truncated, not a torch file: rebuild it
        return None


def describe(d: Cifar10, synthetic=False) -> dict:
    """What a run's record says of its data: the source, the counts, and what the held-out images
    are ("test", or "validation" when test_batch is a split of the training images: then every
    "test" key of the record holds validation figures)."""
    return {"source": "synthetic" if synthetic else "cifar10", "train_images": len(d.train_labels),
            "test_images": len(d.test_labels), "eval_split": d.eval_split}


def synthetic_cifar10(n_train=2560, n_test=1000, seed=0, noise=0.35) -> Cifar10:
    """CIFAR-shaped uint8 data with learnable classes, for offline runs and tests.

    Each class is a random smooth colour pattern (4x4 random values upsampled to 40x40). An image
    is a 32x32 window of its class pattern at a random offset, blended with the pattern of another
    random class (weight up to 0.6, so some images are genuinely ambiguous), with a random
    brightness and per-pixel noise. A small CNN learns most of it in a couple of CPU epochs but
    not all, so the curves, the misclassified gallery and Grad-CAM have something to show.
    The same seed gives the same data.
    """
    g = torch.Generator().manual_seed(seed)
    templates = torch.rand(10, 3, 4, 4, generator=g)
    templates = torch.nn.functional.interpolate(templates, size=40, mode="bicubic", align_corners=False)

    def window(labels, dy, dx):                                    # (n,) each -> (n, 3, 32, 32)
        rows = torch.arange(32)[None, :] + dy[:, None]             # (n, 32)
        cols = torch.arange(32)[None, :] + dx[:, None]
        return templates[labels[:, None, None, None], torch.arange(3)[None, :, None, None],
                         rows[:, None, :, None], cols[:, None, None, :]]

    def make(n):
        labels = torch.randint(0, 10, (n,), generator=g)
        other = (labels + torch.randint(1, 10, (n,), generator=g)) % 10   # always another class
        w = 0.6 * torch.rand(n, 1, 1, 1, generator=g)
        dy, dx, oy, ox = torch.randint(0, 9, (4, n), generator=g)
        t = (1 - w) * window(labels, dy, dx) + w * window(other, oy, ox)
        brightness = 0.7 + 0.6 * torch.rand(n, 1, 1, 1, generator=g)
        x = t * brightness + noise * torch.randn(n, 3, 32, 32, generator=g)
        return (x.clamp(0, 1) * 255).round().to(torch.uint8), labels

    train_x, train_y = make(n_train)
    test_x, test_y = make(n_test)
    return Cifar10(train_x, train_y, test_x, test_y, CLASSES)


# ----------------------------------------------------------------------------------------------
# Augmentation of whole batches (pure functions of the random draws, so each is testable)
#
# How the crop and flip cost one memory copy: each image is padded once, when the loader is made,
# and stored twice, as itself and mirrored, pixels last: (N, 2, 40, 40, 3) uint8. A random crop
# of the padded image is then 32 rows of 32 consecutive pixels, and a row of 32 pixels is 96
# consecutive bytes. `rows_view` sees the store as overlapping 96-byte windows, one starting at
# every pixel, so a batch is ONE index_select of 32 windows per image: no per-image Python, no
# padded copy per epoch, and the flip is only the choice of the mirrored copy.

def pad_and_mirror(images, pad=4, pad_mode="reflect"):
    """uint8 (N, 3, H, W) -> (N, 2, H + 2 pad, W + 2 pad, 3): each image padded, then mirrored.

    pad_mode "reflect" mirrors the border without repeating it (Page's cifar10-fast, airbench);
    "zeros" pads with black, as torchvision's RandomCrop(padding=4) does by default.
    """
    x = images
    if pad_mode == "reflect":
        x = torch.cat([x[..., 1:pad + 1].flip(-1), x, x[..., -pad - 1:-1].flip(-1)], dim=-1)
        x = torch.cat([x[..., 1:pad + 1, :].flip(-2), x, x[..., -pad - 1:-1, :].flip(-2)], dim=-2)
    else:
        x = torch.nn.functional.pad(x, (pad, pad, pad, pad))
    return torch.stack([x, x.flip(-1)], dim=1).permute(0, 1, 3, 4, 2).contiguous()


def rows_view(store, size=32):
    """Overlapping windows of `size` pixels (3 bytes each), one window starting at every pixel of
    `store`: shape (pixels - size + 1, 3 * size), strides (3, 1). Read-only use."""
    flat = store.reshape(-1)
    return flat.as_strided((flat.numel() // 3 - size + 1, 3 * size), (3, 1))


def crop_flip_rows(index, dy, dx, flip, padded_size=40, size=32, pad=4):
    """First pixel in the store of every output row: (B, size) int64.

    index: (B,) images; dy, dx: (B,) crop offsets in the padded image, 0..2 pad; flip: (B,) bool.
    Crop-then-flip equals flip-then-crop at the mirrored offset 2 pad - dx, so a flipped image
    reads the mirrored copy there.
    """
    dx = torch.where(flip, 2 * pad - dx, dx)
    r = torch.arange(size, device=index.device)
    image_start = (index * 2 + flip.long()) * padded_size                       # (B,) first row
    return ((image_start + dy)[:, None] + r[None, :]) * padded_size + dx[:, None]


def gather_rows(store, starts, size=32):
    """The rows `index_select(rows_view(store, size), 0, starts)` selects, gathered byte by byte.

    For MPS, whose index_select first copies a non-contiguous input whole: for the overlapping
    windows of rows_view that would be 96x the store. On the CPU a gather of every byte is slower
    than index_select of whole rows, so only MPS uses it.
    """
    return store.reshape(-1)[starts[:, None] * 3 + torch.arange(3 * size, device=store.device)]


def crop_flip(store, index, dy, dx, flip, size=32):
    """RandomCrop >> FlipLR of images `index` as uint8 (B, size, size, 3), pixels last."""
    pad = (store.shape[2] - size) // 2
    starts = crop_flip_rows(index, dy, dx, flip, store.shape[2], size, pad)     # (B, size)
    flat_starts = starts.reshape(-1)
    if store.device.type == "mps":
        rows = gather_rows(store, flat_starts, size)                              # (B * size, 3 size)
    else:
        rows = torch.index_select(rows_view(store, size), 0, flat_starts)         # (B * size, 3 size)
    return rows.view(len(index), size, size, 3)


def cutout_pixels(cy, cx, size=32, length=8):
    """Flat pixel indices (B, length, length) of a length x length square centred at (cy, cx).

    The centre may lie anywhere in the image, so the square is clipped at the borders (DeVries &
    Taylor, "Improved Regularization of CNNs with Cutout", 1708.04552); clipping by clamping
    repeats border pixels, which are inside the clipped square anyway.
    """
    o = torch.arange(length, device=cy.device) - length // 2
    ys = (cy[:, None] + o[None, :]).clamp(0, size - 1)                         # (B, length)
    xs = (cx[:, None] + o[None, :]).clamp(0, size - 1)
    return ys[:, :, None] * size + xs[:, None, :]


class DeviceLoader:
    """Batches of a dataset held on the device, augmented there.

    images: uint8 (N, 3, 32, 32); labels: int64 (N,). Yields (x, y): x float32 (B, 3, 32, 32),
    normalised with the CIFAR-10 mean and std, in channels_last memory; y int64 (B,).

    train=True: each pass reshuffles and applies RandomCrop 32 after padding 4 >> FlipLR >>
    Cutout 8x8, drawn per image (cutout_inside: the square always whole inside the image, as in
    Page's cifar10-fast, instead of its centre anywhere and the square clipped); the last
    incomplete batch is dropped (as in Page's loader: every step then has the full batch for
    BatchNorm). train=False: fixed order, no augmentation,
    every image once. The draws of pass e are a function of (seed, e) only, so a run can be
    resumed at any epoch with the same data order (`loader.epoch` counts passes).
    """

    def __init__(self, images, labels, batch_size, *, train, device, seed=0, pad_mode="reflect",
                 cutout=8, cutout_inside=False, mean=CIFAR10_MEAN, std=CIFAR10_STD):
        if batch_size < 1:
            raise UsageError(f"batch size must be at least 1, got {batch_size}")
        if pad_mode not in ("reflect", "zeros"):
            raise UsageError(f"pad_mode must be 'reflect' or 'zeros', got {pad_mode!r}")
        if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] != 3 or len(images) != len(labels):
            raise UsageError(f"images must be uint8 (N, 3, H, W) with one label each; got "
                             f"{images.dtype} {tuple(images.shape)} and {len(labels)} labels")
        self.device = torch.device(device)
        self.images = images.to(self.device)                       # uint8: 4x less memory than float
        self.labels = labels.to(self.device)
        self.batch_size, self.train, self.seed = batch_size, train, seed
        self.cutout, self.cutout_inside = cutout, cutout_inside
        # x_norm = (x/255 - mean)/std = x * scale + shift, per channel: (3,).
        std_t = torch.tensor(std, device=self.device)
        self.scale = 1 / (255 * std_t)
        self.shift = -torch.tensor(mean, device=self.device) / std_t
        # The same, repeated along a row of 32 pixels-last pixels: (96,). Broadcasting over an
        # inner dimension of 96 vectorises; over one of 3 it runs several times slower on the CPU.
        self.row_scale, self.row_shift = self.scale.repeat(32), self.shift.repeat(32)
        self.epoch = 0
        if train:
            if images.shape[2:] != (32, 32):
                raise UsageError(f"training batches are cropped to 32x32; images must be 32x32, "
                                 f"got {tuple(images.shape[2:])}")
            self.store = pad_and_mirror(self.images, 4, pad_mode)   # (N, 2, 40, 40, 3), made once
            self.slot = torch.arange(batch_size, device=self.device)[:, None, None] * 1024   # first pixels
            if len(self) == 0:
                raise UsageError(f"{len(images)} training images make no full batch of {batch_size}: "
                                 "use a smaller --batch-size or more data")

    def reseeded(self, seed):
        """The same data (and padded store, not copied) with its own draws, from pass 0."""
        other = copy.copy(self)
        other.seed, other.epoch = seed, 0
        return other

    def __len__(self):
        n = len(self.images)
        return n // self.batch_size if self.train else -(-n // self.batch_size)

    def normalize(self, x_uint8):
        """uint8 (B, 3, H, W) -> normalised float32, channels_last."""
        x = x_uint8.to(torch.float32, memory_format=torch.channels_last)
        return x.mul_(self.scale[:, None, None]).add_(self.shift[:, None, None])   # (B, 3, H, W)

    def __iter__(self):
        epoch, self.epoch = self.epoch, self.epoch + 1
        if not self.train:
            for start in range(0, len(self.images), self.batch_size):
                sel = slice(start, start + self.batch_size)
                yield self.normalize(self.images[sel]), self.labels[sel]
            return
        draws = self.draws(epoch)
        for i in range(len(self)):
            yield self.train_batch(draws, i)

    def draws(self, epoch):
        """Every random draw of training pass `epoch`, made at once: a dict of (N,) tensors on the
        device: order (a permutation), crop offsets dy, dx in 0..8, flip (bool), Cutout centre
        cy, cx in 0..31 (with cutout_inside: where the square fits). A function of (seed, epoch) only, on every device: they are drawn by
        the CPU's generator (CUDA's draws another stream) and copied over once per pass, about
        2 MB for CIFAR-10, so a run resumed on another device sees the same data order."""
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        n = len(self.images)
        order = torch.randperm(n, generator=g)
        dy, dx = torch.randint(0, 9, (2, n), generator=g)
        flip = torch.rand(n, generator=g) < 0.5
        # cutout_pixels spans centre - L//2 .. centre - L//2 + L - 1: inside 0..31 for these
        # centres. Drawn last, so the other draws are the same either way.
        low, high = (self.cutout // 2, 32 - self.cutout + self.cutout // 2) if self.cutout_inside else (0, 31)
        cy, cx = torch.randint(low, high + 1, (2, n), generator=g)
        draws = dict(order=order, dy=dy, dx=dx, flip=flip, cy=cy, cx=cx)
        return {k: v.to(self.device) for k, v in draws.items()}

    def train_batch(self, draws, i):
        """Training batch i of the pass with these draws: (x, y) as the loader yields them."""
        b = self.batch_size
        sel = slice(i * b, (i + 1) * b)
        index = draws["order"][sel]
        x = crop_flip(self.store, index, draws["dy"][sel], draws["dx"][sel], draws["flip"][sel])
        # x: (B, 32, 32, 3) uint8. Normalise a row of 96 values at a time (see __init__).
        x = x.view(b * 32, 96).float().mul_(self.row_scale).add_(self.row_shift)
        x = x.view(b, 32, 32, 3)
        if self.cutout:
            # Cutout zeroes the normalised image (the mean colour), as DeVries & Taylor do.
            cut = cutout_pixels(draws["cy"][sel], draws["cx"][sel], length=self.cutout) + self.slot  # (B, L, L)
            x.view(-1, 3).index_fill_(0, cut.reshape(-1), 0)
        return x.permute(0, 3, 1, 2), self.labels[index]                   # channels_last
