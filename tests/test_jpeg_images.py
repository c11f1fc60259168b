"""JPEG copies of CIFAR-10 training images: the loader and a short training on a slice of them.

The images come from `../shared/data/cifar10-jpeg-train.zip` beside the checkout (the CIFAR-10
training images, stored by a public copy as JPEG quality 75), or from the zip named by the
environment variable CIFAR10_JPEG_ZIP. A user's clone has neither, so the module is skipped
there. Nothing decoded is written outside pytest's temporary folder.

The slice is written in the official python layout by the writer that ships with the zip
(`cifar10_jpeg.write_batch`), so `data.load_cifar10` reads it as it reads the official download.
"""
import importlib.util
import io
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import data as cifar
from custom_resnet import CustomResNet

REPO = Path(__file__).resolve().parents[1]
ZIP = Path(os.environ.get("CIFAR10_JPEG_ZIP", REPO.parent / "shared" / "data" / "cifar10-jpeg-train.zip"))
pytestmark = pytest.mark.skipif(not ZIP.is_file(), reason=f"no JPEG copies of CIFAR-10 here ({ZIP} is absent; "
                                "set CIFAR10_JPEG_ZIP to the zip to run these tests)")
PER_CLASS = 300          # 3,000 images: 2,500 for training, 500 held out (about 1 s to decode)


def _load_writer():
    spec = importlib.util.spec_from_file_location("cifar10_jpeg", ZIP.parent / "cifar10_jpeg.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _decode_slice(per_class, classes):
    """The first `per_class` images of every class in the zip: uint8 (10 * per_class, 3, 32, 32), labels."""
    from PIL import Image
    images, labels = [], []
    with zipfile.ZipFile(ZIP) as z:
        names = sorted(n for n in z.namelist() if n.endswith(".jpg"))
        for c, cls in enumerate(classes):
            mine = [n for n in names if n.split("/")[-2] == cls][:per_class]
            assert len(mine) == per_class, f"{cls}: only {len(mine)} images in {ZIP}"
            for name in mine:
                img = Image.open(io.BytesIO(z.read(name))).convert("RGB")
                images.append(np.asarray(img, dtype=np.uint8).transpose(2, 0, 1))
                labels.append(c)
    return np.stack(images), np.array(labels)


@pytest.fixture(scope="module")
def jpeg(tmp_path_factory):
    """A cifar-10-batches-py folder of 2,500 training and 500 held-out JPEG copies, loaded by data.py."""
    writer = _load_writer()
    images, labels = _decode_slice(PER_CLASS, writer.CLASSES)
    order = np.random.default_rng(0).permutation(len(labels))       # classes interleaved
    images, labels = images[order], labels[order]
    root = tmp_path_factory.mktemp("jpeg")
    folder = root / "cifar-10-batches-py"
    folder.mkdir()
    for i, part in enumerate(np.array_split(np.arange(2500), 5), start=1):
        writer.write_batch(folder / f"data_batch_{i}", images[part], labels[part], f"training batch {i} of 5")
    writer.write_batch(folder / "test_batch", images[2500:], labels[2500:], "held out")
    import pickle
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": list(writer.CLASSES), "num_cases_per_batch": 500, "num_vis": 3072}, f, protocol=2)
    return cifar.load_cifar10(str(root), download=False, cache=False)


def test_the_loader_reads_the_jpeg_copies_with_cifar10_channel_statistics(jpeg):
    assert jpeg.train_images.shape == (2500, 3, 32, 32) and jpeg.train_images.dtype == torch.uint8
    assert len(jpeg.test_labels) == 500 and jpeg.classes[0] == "airplane"
    assert torch.bincount(jpeg.train_labels, minlength=10).min() >= 200       # every class is there
    x = jpeg.train_images.float() / 255
    mean, std = x.mean((0, 2, 3)), x.std((0, 2, 3))
    # the constants data.py normalises with are CIFAR-10's; 2,500 JPEG copies reproduce them to
    # sampling error (per-image means vary by about 0.2, so the standard error is about 0.004)
    assert torch.allclose(mean, torch.tensor(cifar.CIFAR10_MEAN), atol=0.02), mean
    assert torch.allclose(std, torch.tensor(cifar.CIFAR10_STD), atol=0.02), std
    # what the network sees: the evaluation batches, normalised, have mean ~0 and std ~1 per channel
    loader = cifar.DeviceLoader(jpeg.test_images, jpeg.test_labels, 500, train=False, device="cpu")
    (xb, yb), = list(loader)
    assert torch.equal(yb, jpeg.test_labels)
    assert xb.mean((0, 2, 3)).abs().max() < 0.1 and (xb.std((0, 2, 3)) - 1).abs().max() < 0.1


def test_a_narrow_network_learns_the_jpeg_copies_in_a_few_dozen_steps(jpeg):
    torch.manual_seed(0)
    model = CustomResNet(width=8)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4)
    loader = cifar.DeviceLoader(jpeg.train_images, jpeg.train_labels, 64, train=True, device="cpu", seed=0)
    steps = 0
    for _ in range(2):                                            # 2 x 39 steps of 64 augmented images
        for x, y in loader:
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            steps += 1
    model.eval()
    with torch.no_grad():
        (x, y), = list(cifar.DeviceLoader(jpeg.test_images, jpeg.test_labels, 500, train=False, device="cpu"))
        accuracy = (model(x).argmax(1) == y).float().mean().item()
    # chance is 10%: 20% (100 of the 500 held-out images) is learning, with room for the noise
    # of a few dozen steps
    assert steps == 78 and accuracy > 0.20, accuracy
