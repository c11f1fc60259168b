"""data.py: reading CIFAR-format files safely, the synthetic set, and batched augmentation."""
import os
import pickle

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import data
from cifar_files import write_batch, write_cifar_folder
from utils import UsageError


# ----------------------------------------------------------------------------------------------
# Reading the python-format files

@pytest.mark.parametrize("keys", ["py2", "bytes", "str"])
def test_load_cifar10_reads_each_key_encoding(tmp_path, keys):
    train_x, train_y, test_x, test_y = write_cifar_folder(tmp_path, n_per_batch=4, keys=keys)
    d = data.load_cifar10(tmp_path, download=False, cache=False)
    assert d.train_images.shape == (20, 3, 32, 32) and d.train_images.dtype == torch.uint8
    assert d.test_images.shape == (4, 3, 32, 32)
    assert d.train_labels.dtype == torch.int64
    # Rows are 1024 R, 1024 G, 1024 B values of a 32x32 image, row-major.
    assert torch.equal(d.train_images.reshape(20, 3072), torch.from_numpy(train_x))
    assert torch.equal(d.train_images[0, 1, 2, 3], torch.tensor(train_x[0, 1024 + 2 * 32 + 3]))
    assert d.train_labels.tolist() == train_y.tolist() and d.test_labels.tolist() == test_y.tolist()
    assert d.classes == data.CLASSES


@pytest.mark.parametrize("protocol", [2, 4])
def test_python3_pickles_of_any_protocol_load(tmp_path, protocol):
    arr = np.arange(2 * 3072).reshape(2, 3072).astype(np.uint8)
    write_batch(tmp_path / "b", arr, [1, 9], keys="bytes", protocol=protocol)
    images, labels = data.read_batch(tmp_path / "b")
    assert torch.equal(images.reshape(2, 3072), torch.from_numpy(arr)) and labels.tolist() == [1, 9]


def _bad_batch(tmp_path, **change):
    batch = {"data": np.zeros((3, 3072), np.uint8), "labels": [0, 1, 2]}
    batch.update(change)
    path = tmp_path / "data_batch_1"
    with open(path, "wb") as f:
        pickle.dump(batch, f, protocol=4)
    return path


@pytest.mark.parametrize("change, message", [
    (dict(data=np.zeros((3, 3000), np.uint8)), "shape"),
    (dict(data=np.zeros((3, 3072), np.int32)), "uint8"),
    (dict(labels=[0, 1, 10]), "0..9"),
    (dict(labels=[0, -1, 2]), "0..9"),
    (dict(labels=[0, 1]), "3 images but labels"),
    (dict(labels=["a", "b", "c"]), "labels"),
])
def test_malformed_batches_are_refused_naming_the_file(tmp_path, change, message):
    path = _bad_batch(tmp_path, **change)
    with pytest.raises(UsageError, match=message) as e:
        data.read_batch(path)
    assert str(path) in str(e.value)


def test_truncated_and_garbage_files_are_refused_naming_the_file(tmp_path):
    write_batch(tmp_path / "good", np.zeros((4, 3072), np.uint8), [0, 1, 2, 3])
    blob = (tmp_path / "good").read_bytes()
    (tmp_path / "truncated").write_bytes(blob[: len(blob) // 2])
    (tmp_path / "garbage").write_bytes(os.urandom(1000))
    (tmp_path / "list").write_bytes(pickle.dumps([1, 2, 3]))
    (tmp_path / "nokeys").write_bytes(pickle.dumps({"images": 1}))
    for name in ["truncated", "garbage", "list", "nokeys"]:
        with pytest.raises(UsageError) as e:
            data.read_batch(tmp_path / name)
        assert name in str(e.value)


class _Hostile:
    """Unpickling this runs open(marker, 'w'): the classic pickle code-execution attack."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("payload", ["open", "os.system"])
def test_a_batch_that_would_run_code_is_refused_and_runs_nothing(tmp_path, payload):
    marker = tmp_path / "pwned"
    evil = _Hostile(str(marker)) if payload == "open" else _System(f"touch {marker}")
    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps({"data": evil, "labels": [0]}, protocol=2))
    with pytest.raises(UsageError, match="not allowed"):
        data.read_batch(path)
    assert not marker.exists()


class _System:
    def __init__(self, cmd):
        self.cmd = cmd

    def __reduce__(self):
        return (os.system, (self.cmd,))


def test_missing_data_without_download_says_where_and_what_to_do(tmp_path):
    with pytest.raises(UsageError) as e:
        data.load_cifar10(tmp_path / "nowhere", download=False)
    msg = str(e.value)
    assert str(tmp_path / "nowhere") in msg and "--synthetic" in msg and "cifar-10-batches-py" in msg


def test_failed_download_offline_is_one_clear_error(tmp_path, monkeypatch):
    import torchvision.datasets.utils as tvu

    def offline(url, root, *a, **k):
        raise OSError("[Errno -3] Temporary failure in name resolution")
    monkeypatch.setattr(tvu, "download_url", offline)
    with pytest.raises(UsageError, match="could not download") as e:
        data.load_cifar10(tmp_path, download=True)
    assert "--synthetic" in str(e.value)
    assert not (tmp_path / "cifar-10-python.tar.gz").exists()


def test_a_download_that_fills_the_disk_says_so_not_that_the_network_failed(tmp_path, monkeypatch):
    import errno
    import torchvision.datasets.utils as tvu

    def full(url, root, *a, **k):
        (tmp_path / "cifar-10-python.tar.gz").write_bytes(b"the first megabytes")
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(tvu, "download_url", full)
    with pytest.raises(UsageError, match=r"\(No space left on device\): free some space \(about 350 MB"):
        data.load_cifar10(tmp_path, download=True)
    assert os.listdir(tmp_path) == []                                   # the part written is removed


def test_a_download_with_the_wrong_md5_is_deleted_not_used(tmp_path, monkeypatch):
    import torchvision.datasets.utils as tvu

    def fake_download(url, root, *a, **k):
        (tmp_path / "cifar-10-python.tar.gz").write_bytes(b"not the archive")
    monkeypatch.setattr(tvu, "download_url", fake_download)
    with pytest.raises(UsageError, match="MD5"):
        data.load_cifar10(tmp_path, download=True)
    assert not (tmp_path / "cifar-10-python.tar.gz").exists()
    assert not (tmp_path / "cifar-10-batches-py").exists()


def test_a_full_disk_while_unpacking_leaves_no_batch_file_cut_short(tmp_path, monkeypatch):
    import errno
    import shutil
    import tarfile
    import torchvision.datasets.utils as tvu
    write_cifar_folder(tmp_path / "src", n_per_batch=2)
    archive = tmp_path / "made.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "src" / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    root = tmp_path / "root"
    root.mkdir()
    monkeypatch.setattr(tvu, "download_url", lambda url, r, *a, **k: shutil.copy(archive, root / "cifar-10-python.tar.gz"))
    monkeypatch.setattr(data, "CIFAR10_MD5", data._digest(archive))
    extract = tarfile.TarFile.extractall

    def full(self, path, members, **kwargs):                   # two files whole, then half of a third
        extract(self, path, members=members[:2], **kwargs)
        with open(os.path.join(path, members[2].name), "wb") as f:
            f.write(b"half")
        raise OSError(errno.ENOSPC, "No space left on device")
    with monkeypatch.context() as m:
        m.setattr(tarfile.TarFile, "extractall", full)
        with pytest.raises(UsageError, match=r"could not unpack .* \(No space left on device\): no batch file was left "
                                             r"half-written; free some space"):
            data.load_cifar10(root, download=True)
    assert os.listdir(root) == ["cifar-10-python.tar.gz"]                 # the archive, whole, and nothing else
    assert len(data.load_cifar10(root, download=True).train_labels) == 10    # run again: it is unpacked


def test_a_good_archive_is_unpacked_and_loaded(tmp_path, monkeypatch):
    import tarfile
    src = tmp_path / "src"
    train_x, _, _, _ = write_cifar_folder(src, n_per_batch=2)
    archive = tmp_path / "made.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(src / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    root = tmp_path / "root"
    root.mkdir()
    import shutil
    import torchvision.datasets.utils as tvu
    monkeypatch.setattr(tvu, "download_url", lambda url, r, *a, **k: shutil.copy(archive, root / "cifar-10-python.tar.gz"))
    monkeypatch.setattr(data, "CIFAR10_MD5", data._digest(archive))
    d = data.load_cifar10(root, download=True)
    assert torch.equal(d.train_images.reshape(-1, 3072), torch.from_numpy(train_x))


def test_the_cache_is_used_and_a_broken_cache_is_rebuilt(tmp_path, monkeypatch):
    write_cifar_folder(tmp_path, n_per_batch=3)
    first = data.load_cifar10(tmp_path, download=False)
    assert (tmp_path / data.CACHE_NAME).exists()
    # With the cache in place the batch files are not read again.
    monkeypatch.setattr(data, "_read_batch_and_label", lambda p: (_ for _ in ()).throw(AssertionError("read")))
    second = data.load_cifar10(tmp_path, download=False)
    assert torch.equal(first.train_images, second.train_images) and second.classes == first.classes
    monkeypatch.undo()
    (tmp_path / data.CACHE_NAME).write_bytes(b"broken")
    third = data.load_cifar10(tmp_path, download=False)
    assert torch.equal(first.test_images, third.test_images)


def label_test_batch(root, batch_label):
    """Rewrite root's test_batch with this 'batch_label' (None: without one), as
    ../shared/data/cifar10_jpeg.py writes its validation split (str keys, pickle protocol 2)."""
    path = os.path.join(root, "cifar-10-batches-py", "test_batch")
    images, labels = data.read_batch(path)
    batch = {"labels": labels.tolist(), "data": images.reshape(-1, 3072).numpy()}
    if batch_label is not None:
        batch["batch_label"] = batch_label
    with open(path, "wb") as f:
        pickle.dump(batch, f, protocol=2)


@pytest.mark.parametrize("first, second", [("validation split", "testing batch 1 of 1"),
                                           ("testing batch 1 of 1", b"Validation split"), (None, "validation split")])
def test_the_held_out_images_are_named_by_the_test_batchs_label(tmp_path, monkeypatch, first, second):
    """Figures measured on a validation split must not be called test figures (issue 10). Each
    case relabels the same folder, so a loader that ignored the label would fail one of the two."""
    want = {None: "test", "testing batch 1 of 1": "test", "validation split": "validation",
            b"Validation split": "validation"}
    write_cifar_folder(tmp_path, n_per_batch=3)
    for batch_label in (first, second):
        label_test_batch(tmp_path, batch_label)          # None: no 'batch_label' key at all
        assert data.load_cifar10(tmp_path, download=False, cache=False).eval_split == want[batch_label]
    d = data.load_cifar10(tmp_path, download=False)       # writes the cache
    with monkeypatch.context() as m:                       # read back from the cache alone
        m.setattr(data, "_read_batch_and_label", lambda p: (_ for _ in ()).throw(AssertionError("read")))
        assert data.load_cifar10(tmp_path, download=False).eval_split == d.eval_split == want[second]


def test_a_cache_without_the_split_name_is_rebuilt_from_the_files(tmp_path):
    write_cifar_folder(tmp_path, n_per_batch=3)
    label_test_batch(tmp_path, "validation split")
    d = data.load_cifar10(tmp_path, download=False, cache=False)
    old = {k: v for k, v in d._asdict().items() if k != "eval_split"}      # no split name, no fingerprint
    torch.save({**old, "classes": list(d.classes)}, tmp_path / data.CACHE_NAME)
    # Without the files it cannot be rebuilt: a clear error, and the old cache is not deleted.
    folder = tmp_path / "cifar-10-batches-py"
    folder.rename(tmp_path / "elsewhere")
    with pytest.raises(UsageError, match="CIFAR-10 not found"):
        data.load_cifar10(tmp_path, download=False)
    assert (tmp_path / data.CACHE_NAME).exists()
    (tmp_path / "elsewhere").rename(folder)
    assert data.load_cifar10(tmp_path, download=False).eval_split == "validation"
    assert torch.load(tmp_path / data.CACHE_NAME, weights_only=True)["eval_split"] == "validation"   # rewritten


# ----------------------------------------------------------------------------------------------
# Synthetic data

def test_synthetic_data_is_cifar_shaped_and_reproducible():
    a = data.synthetic_cifar10(64, 32, seed=3)
    b = data.synthetic_cifar10(64, 32, seed=3)
    c = data.synthetic_cifar10(64, 32, seed=4)
    assert a.train_images.shape == (64, 3, 32, 32) and a.train_images.dtype == torch.uint8
    assert a.test_images.shape == (32, 3, 32, 32) and a.train_labels.dtype == torch.int64
    assert 0 <= a.train_labels.min() and a.train_labels.max() <= 9
    assert torch.equal(a.train_images, b.train_images) and not torch.equal(a.train_images, c.train_images)
    assert a.train_images.float().std() > 30      # not a blank image


# ----------------------------------------------------------------------------------------------
# Augmentation: each piece does exactly what it claims

@pytest.mark.parametrize("pad_mode, torch_mode", [("reflect", "reflect"), ("zeros", "constant")])
def test_crop_is_a_window_of_the_padded_image_and_flip_mirrors_it(pad_mode, torch_mode):
    torch.manual_seed(0)
    images = torch.randint(1, 256, (2, 3, 32, 32), dtype=torch.uint8)
    padded = F.pad(images.float(), (4, 4, 4, 4), mode=torch_mode)                # (2, 3, 40, 40)
    store = data.pad_and_mirror(images, 4, pad_mode)
    assert store.shape == (2, 2, 40, 40, 3) and store.dtype == torch.uint8
    dy, dx = torch.meshgrid(torch.arange(9), torch.arange(9), indexing="ij")
    dy, dx = dy.flatten().repeat(4), dx.flatten().repeat(4)                   # all 81 offsets
    flip = (torch.arange(324) // 81) % 2 == 1                                 # without, with flip
    index = torch.arange(324) // 162                                          # both images
    out = data.crop_flip(store, index, dy, dx, flip).permute(0, 3, 1, 2).float()   # (324, 3, 32, 32)
    for k in range(324):
        window = padded[index[k], :, dy[k]:dy[k] + 32, dx[k]:dx[k] + 32]
        if flip[k]:
            window = window.flip(-1)
        assert torch.equal(out[k], window), (pad_mode, int(dy[k]), int(dx[k]), bool(flip[k]))


def test_the_gather_path_for_mps_selects_the_same_rows_as_index_select():
    torch.manual_seed(0)
    store = data.pad_and_mirror(torch.randint(0, 256, (3, 3, 32, 32), dtype=torch.uint8))
    starts = data.crop_flip_rows(torch.tensor([0, 2, 1, 2]), torch.tensor([0, 8, 3, 5]),
                                 torch.tensor([8, 0, 4, 1]), torch.tensor([False, True, True, False]))
    starts = starts.reshape(-1)                                                # (4 * 32,)
    expected = torch.index_select(data.rows_view(store), 0, starts)
    assert torch.equal(data.gather_rows(store, starts), expected)


def test_cutout_zeroes_one_8x8_square_clipped_at_the_borders():
    cy = torch.tensor([16, 0, 31, 3, 28])
    cx = torch.tensor([16, 0, 31, 30, 2])
    pixels = data.cutout_pixels(cy, cx, length=8)                  # (5, 8, 8) flat indices
    mask = torch.zeros(5, 1024, dtype=torch.bool)
    mask.scatter_(1, pixels.flatten(1), True)
    mask = mask.view(5, 32, 32)
    # The square is [c - 4, c + 4) in each direction, clipped at the image's border.
    assert mask.sum((1, 2)).tolist() == [64, 16, 5 * 5, 7 * 6, 8 * 6]
    assert mask[0, 12:20, 12:20].all()
    assert mask[1, :4, :4].all() and mask[2, 27:, 27:].all()
    assert mask[3, 0:7, 26:32].all() and mask[4, 24:32, 0:6].all()


@pytest.mark.parametrize("length", [8, 5, 1])
def test_cutout_inside_keeps_the_whole_square_in_the_image_and_the_other_draws(length):
    """cutout_inside (Page's variant): every centre lets the square lie whole in the image, so
    every image loses exactly length^2 pixels, and every square position is drawn; the crop, flip
    and order draws are those of the clipped variant."""
    d = data.synthetic_cifar10(2000, 8)
    inside = _loader(d.train_images, d.train_labels, train=True, cutout=length, cutout_inside=True).draws(0)
    clipped = _loader(d.train_images, d.train_labels, train=True, cutout=length).draws(0)
    for key in ("order", "dy", "dx", "flip"):
        assert torch.equal(inside[key], clipped[key]), key
    first = inside["cy"] - length // 2                                # the square's first row
    assert first.min() == 0 and first.max() == 32 - length           # every position, none outside
    pixels = data.cutout_pixels(inside["cy"], inside["cx"], length=length).flatten(1)   # (N, L * L)
    assert all(len(set(p)) == length * length for p in pixels.tolist())
    assert (clipped["cy"].min(), clipped["cy"].max()) == (0, 31)      # the clipped variant: anywhere


def _loader(images, labels, **kw):
    return data.DeviceLoader(images, labels, kw.pop("batch_size", 4), device="cpu", **kw)


def test_eval_loader_normalises_and_keeps_order():
    d = data.synthetic_cifar10(10, 10)
    loader = _loader(d.test_images, d.test_labels, batch_size=4, train=False)
    assert len(loader) == 3
    xs, ys = zip(*loader)
    assert [len(y) for y in ys] == [4, 4, 2]
    x = torch.cat(xs)
    mean = torch.tensor(data.CIFAR10_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(data.CIFAR10_STD).view(1, 3, 1, 1)
    expected = (d.test_images.float() / 255 - mean) / std
    torch.testing.assert_close(x, expected, atol=1e-5, rtol=0)
    assert torch.equal(torch.cat(ys), d.test_labels)
    assert x.is_contiguous(memory_format=torch.channels_last)


def test_train_loader_output_is_crop_flip_cutout_of_a_source_image():
    """Every training image equals one of the 162 crop/flip variants of its own source image,
    except inside one clipped 8x8 square set to 0 (Cutout, in normalised units)."""
    torch.manual_seed(1)
    n = 6
    images = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8)
    labels = torch.arange(n)                           # the label names the source image
    loader = _loader(images, labels, batch_size=3, train=True, seed=5)
    norm = loader.normalize(images)                    # (n, 3, 32, 32)
    padded = F.pad(norm, (4, 4, 4, 4), mode="reflect")
    seen_shift, flips, cutouts = set(), 0, 0
    for x, y in loader:
        for img, src in zip(x, y):
            best = None
            for dy in range(9):
                for dx in range(9):
                    for fl in (False, True):
                        w = padded[src, :, dy:dy + 32, dx:dx + 32]
                        w = w.flip(-1) if fl else w
                        differ = (w - img).abs().amax(0) > 1e-5            # (32, 32)
                        if best is None or differ.sum() < best[0].sum():
                            best = (differ, dy, dx, fl)
            differ = best[0]
            seen_shift.add((best[1], best[2]))
            flips += best[3]
            assert differ.sum() <= 64
            if differ.any():
                cutouts += 1
                ys, xs = differ.nonzero(as_tuple=True)
                assert ys.max() - ys.min() < 8 and xs.max() - xs.min() < 8
                assert (img[:, differ] == 0).all()
    assert len(seen_shift) > 1                         # the crops really vary
    assert 0 < flips < n and cutouts > 0               # some images flipped, some cut out


def test_one_pass_of_random_crops_covers_every_offset_in_both_directions():
    """RandomCrop(32, padding=4) draws each offset 0..8 down and across: one pass of 300 images
    shows all nine in each direction, found by matching every crop against the padded image
    (an off-by-one in the draws or in the crop arithmetic loses offset 0 or 8)."""
    torch.manual_seed(2)
    n = 300
    images = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8)
    loader = _loader(images, torch.arange(n), batch_size=100, train=True, seed=3, cutout=0)
    padded = F.pad(loader.normalize(images), (4, 4, 4, 4), mode="reflect")       # (n, 3, 40, 40)
    rows, cols = set(), set()
    for x, y in loader:
        for img, src in zip(x, y):
            for flipped in (img, img.flip(-1)):           # a flipped crop is the mirror of a crop
                found = [(dy, dx) for dy in range(9) for dx in range(9)
                         if torch.allclose(padded[src, :, dy:dy + 32, dx:dx + 32], flipped, atol=1e-5)]
                if found:
                    (dy, dx), = found
                    rows.add(dy)
                    cols.add(dx)                      # the drawn offset, flipped or not
                    break
            else:
                raise AssertionError(f"image {int(src)} is no crop of its padded source")
    assert rows == set(range(9)) and cols == set(range(9))


def test_train_loader_is_reproducible_and_reshuffles_each_epoch():
    d = data.synthetic_cifar10(40, 8)
    a = _loader(d.train_images, d.train_labels, batch_size=8, train=True, seed=7)
    b = _loader(d.train_images, d.train_labels, batch_size=8, train=True, seed=7)
    assert len(a) == 5
    epoch0_a, epoch0_b = list(a), list(b)
    for (xa, ya), (xb, yb) in zip(epoch0_a, epoch0_b):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    epoch1_a = list(a)
    assert not torch.equal(epoch0_a[0][0], epoch1_a[0][0])
    # A pass sees every image once (here N is a multiple of the batch).
    assert sorted(torch.cat([y for _, y in epoch1_a]).tolist()) == sorted(d.train_labels.tolist())
    # Resuming at epoch 1 gives epoch 1's batches.
    c = _loader(d.train_images, d.train_labels, batch_size=8, train=True, seed=7)
    c.epoch = 1
    assert all(torch.equal(x1, xc) for (x1, _), (xc, _) in zip(epoch1_a, c))
    # The draws are the CPU generator's, whatever the device (tests/test_accelerators.py checks
    # that a device loader's batches equal these).
    g = torch.Generator().manual_seed(7 * 1_000_003 + 1)
    assert torch.equal(c.draws(1)["order"], torch.randperm(40, generator=g))


def test_train_loader_drops_the_last_incomplete_batch_and_refuses_too_little_data():
    d = data.synthetic_cifar10(10, 4)
    loader = _loader(d.train_images, d.train_labels, batch_size=4, train=True)
    assert len(loader) == 2 and [len(y) for _, y in loader] == [4, 4]
    with pytest.raises(UsageError, match="batch"):
        _loader(d.train_images, d.train_labels, batch_size=11, train=True)
    with pytest.raises(UsageError, match="at least 1"):
        _loader(d.train_images, d.train_labels, batch_size=0, train=True)


def test_train_loader_refuses_images_that_are_not_32x32():
    with pytest.raises(UsageError, match="32x32"):
        _loader(torch.zeros(8, 3, 28, 28, dtype=torch.uint8), torch.zeros(8, dtype=torch.long), train=True)


def test_a_reseeded_loader_shares_the_store_and_has_its_own_draws():
    d = data.synthetic_cifar10(32, 8)
    a = _loader(d.train_images, d.train_labels, batch_size=8, train=True, seed=1)
    b = a.reseeded(2)
    assert b.store is a.store and b.seed == 2 and a.seed == 1
    xa, xb = next(iter(a)), next(iter(b))
    assert not torch.equal(xa[0], xb[0])
    assert torch.equal(next(iter(a.reseeded(2)))[0], xb[0])


# ----------------------------------------------------------------------------------------------
# The cache: a shortcut tied to the files it was built from, never trusted over them

def test_the_cache_is_rebuilt_when_the_batch_files_change(tmp_path):
    """Other files in the folder (say, real CIFAR-10 put where the JPEG copies were): the next
    load reads them, not the old cache."""
    write_cifar_folder(tmp_path, n_per_batch=3, seed=0)
    first = data.load_cifar10(tmp_path, download=False)
    assert (tmp_path / data.CACHE_NAME).exists()
    train_x, _, _, _ = write_cifar_folder(tmp_path, n_per_batch=5, seed=1)         # replaced
    second = data.load_cifar10(tmp_path, download=False)
    assert len(second.train_labels) == 25 != len(first.train_labels)
    assert torch.equal(second.train_images.reshape(-1, 3072), torch.from_numpy(train_x))
    third = data.load_cifar10(tmp_path, download=False)                            # from the new cache
    assert torch.equal(third.train_images, second.train_images)


def test_a_batch_file_replaced_by_another_of_the_same_size_and_time_is_read_not_the_cache(tmp_path):
    """Same size, modification time set back (os.utime): only the content tells them apart."""
    write_cifar_folder(tmp_path, n_per_batch=3, seed=0)
    first = data.load_cifar10(tmp_path, download=False)                            # writes the cache
    path = tmp_path / "cifar-10-batches-py" / "data_batch_1"
    was = path.stat()
    images = np.full((3, 3072), 7, dtype=np.uint8)
    write_batch(str(path), images, [1, 2, 3])
    os.utime(path, ns=(was.st_atime_ns, was.st_mtime_ns))
    assert path.stat().st_size == was.st_size and path.stat().st_mtime_ns == was.st_mtime_ns
    again = data.load_cifar10(tmp_path, download=False)
    assert torch.equal(again.train_images[:3].reshape(3, -1), torch.from_numpy(images))
    assert again.train_labels[:3].tolist() == [1, 2, 3] and not torch.equal(again.train_images, first.train_images)


def test_a_cache_made_from_these_files_is_used_as_it_is(tmp_path):
    """The cache, when its fingerprint is that of the files, is what load_cifar10 returns: here a
    cache written with other (valid) labels is returned, proving the files were not read again."""
    write_cifar_folder(tmp_path, n_per_batch=3)
    d = data.load_cifar10(tmp_path, download=False)
    cache = torch.load(tmp_path / data.CACHE_NAME, weights_only=True)
    cache["train_labels"] = (cache["train_labels"] + 1) % 10
    torch.save(cache, tmp_path / data.CACHE_NAME)
    again = data.load_cifar10(tmp_path, download=False)
    assert torch.equal(again.train_labels, (d.train_labels + 1) % 10)


@pytest.mark.parametrize("spoil", ["bad labels", "wrong shape", "wrong dtype", "no fingerprint", "flipped bit",
                                   "truncated", "not a dict"])
def test_a_bad_cache_is_rebuilt_from_the_files_not_trusted(tmp_path, spoil):
    write_cifar_folder(tmp_path, n_per_batch=3)
    d = data.load_cifar10(tmp_path, download=False)
    path = tmp_path / data.CACHE_NAME
    cache = torch.load(path, weights_only=True)
    if spoil == "bad labels":
        cache["test_labels"] = cache["test_labels"] + 20
    elif spoil == "wrong shape":
        cache["train_images"] = cache["train_images"][:, :, :16]
    elif spoil == "wrong dtype":
        cache["train_images"] = cache["train_images"].float()
    elif spoil == "no fingerprint":
        del cache["files"]
    if spoil == "not a dict":
        torch.save([1, 2], path)
    elif spoil in ("flipped bit", "truncated"):
        blob = bytearray(path.read_bytes())
        if spoil == "flipped bit":
            blob[len(blob) // 2] ^= 0x10          # inside the image data: a CRC mismatch
        path.write_bytes(bytes(blob) if spoil == "flipped bit" else bytes(blob[: len(blob) // 2]))
    else:
        torch.save(cache, path)
    again = data.load_cifar10(tmp_path, download=False)
    for got, want in zip(again[:4], d[:4]):
        assert torch.equal(got, want)
    assert data.read_cache(str(path), data.fingerprint(str(tmp_path / "cifar-10-batches-py"))) is not None   # rewritten


def test_without_the_batch_files_the_cache_alone_is_not_enough(tmp_path):
    write_cifar_folder(tmp_path, n_per_batch=3)
    data.load_cifar10(tmp_path, download=False)
    (tmp_path / "cifar-10-batches-py" / "data_batch_2").unlink()
    with pytest.raises(UsageError, match="CIFAR-10 not found: 1 of the batch files are missing"):
        data.load_cifar10(tmp_path, download=False)
    assert (tmp_path / data.CACHE_NAME).exists()                   # not deleted: only not trusted


# ----------------------------------------------------------------------------------------------
# Files that load but make no sense

@pytest.mark.parametrize("labels, says", [([9.9, 1.0, 2.0], "float"), (["cat", "dog", "cat"], "str"),
                                          ([True, False, True], "bool")])
def test_labels_that_are_not_whole_numbers_are_refused_naming_the_file(tmp_path, labels, says):
    write_cifar_folder(tmp_path, n_per_batch=3)
    path = tmp_path / "cifar-10-batches-py" / "data_batch_4"
    write_batch(path, np.zeros((3, 3072), np.uint8), labels, keys="str")
    with pytest.raises(UsageError, match=f"data_batch_4: 'labels' must be whole numbers 0..9, found {says}"):
        data.load_cifar10(tmp_path, download=False, cache=False)
    path_np = tmp_path / "cifar-10-batches-py" / "data_batch_5"
    with open(path_np, "wb") as f:
        pickle.dump({"data": np.zeros((3, 3072), np.uint8), "labels": np.array([1.5, 2.0, 3.0])}, f)
    write_batch(path, np.zeros((3, 3072), np.uint8), [1, 2, 3], keys="str")
    with pytest.raises(UsageError, match="data_batch_5: 'labels' must be whole numbers 0..9, found float64"):
        data.load_cifar10(tmp_path, download=False, cache=False)


def test_an_empty_test_batch_is_refused_in_one_line(tmp_path):
    write_cifar_folder(tmp_path, n_per_batch=3)
    write_batch(tmp_path / "cifar-10-batches-py" / "test_batch", np.zeros((0, 3072), np.uint8), [], keys="str")
    with pytest.raises(UsageError, match="test_batch holds no images: there is nothing to evaluate on"):
        data.load_cifar10(tmp_path, download=False)
    assert not (tmp_path / data.CACHE_NAME).exists()


def test_a_hostile_batches_meta_is_refused_and_runs_nothing(tmp_path):
    write_cifar_folder(tmp_path, n_per_batch=3)
    marker = tmp_path / "pwned"
    with open(tmp_path / "cifar-10-batches-py" / "batches.meta", "wb") as f:
        pickle.dump({"label_names": _System(f"touch {marker}")}, f, protocol=2)
    with pytest.raises(UsageError, match="batches.meta: not a readable CIFAR-10 meta file"):
        data.load_cifar10(tmp_path, download=False)
    assert not marker.exists()
