"""The custom ResNet for CIFAR-10 (the "ResNet-9" of David Page's "How to train your ResNet").

Imports torch only, so this file can be copied into coursework on its own.

Layer table for a (N, 3, 32, 32) input, default width 64 (channel counts scale with `width`):

    part     what it does                                              output
    prep     Conv(3->64) >> BN >> ReLU                                 (N,  64, 32, 32)
    layer1   X = Conv(64->128) >> MaxPool(2) >> BN >> ReLU             (N, 128, 16, 16)
             R1 = res(X): (Conv >> BN >> ReLU) x 2; output X + R1      (N, 128, 16, 16)
    layer2   Conv(128->256) >> MaxPool(2) >> BN >> ReLU                (N, 256,  8,  8)
    layer3   X = Conv(256->512) >> MaxPool(2) >> BN >> ReLU            (N, 512,  4,  4)
             R2 = res(X): (Conv >> BN >> ReLU) x 2; output X + R2      (N, 512,  4,  4)
    pool     MaxPool(4), flatten                                       (N, 512)
    fc       Linear(512 -> 10, no bias), times `logit_scale`           (N, 10)

Every conv is 3x3, stride 1, padding 1, without bias (the BN that follows has one).
Parameters: 6,573,120 (6,573,130 if the FC had a bias).

Where is the SoftMax? `forward` returns the class scores *before* the softmax (logits).
The loss (`F.cross_entropy`) applies log-softmax itself, which is numerically safer than
log(softmax(x)); probabilities are `model(x).softmax(-1)`. Grad-CAM differentiates the
class score before the softmax, as in the Grad-CAM paper (Selvaraju et al., 1610.02391).

Parts are named, so a layer is picked by name: `model.layer3`, `model.layer1.res.conv2`,
`dict(model.named_modules())["layer3"]`.

What it takes: CIFAR-10 images normalised per channel with the training set's mean and std
(`normalize`); what it returns: scores for the classes in `CLASSES` order. Like torchvision's
weights, which carry their transforms and categories, the model's file states both, so a copy of
this one file can classify a picture.

`python custom_resnet.py [--width N]` prints this table as measured (`summary(model)`): each
part's output shape and parameter count, and the total.
"""
import torch
from torch import nn

CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
# Per-channel mean and std of the 50,000 CIFAR-10 training images, on the 0..1 scale.
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)


def normalize(images: torch.Tensor) -> torch.Tensor:
    """uint8 images (N, 3, H, W) in 0..255 -> float32 (x / 255 - mean) / std, channels_last.

    Computed as x * scale + shift with scale = 1 / (255 std) and shift = -mean / std, the very
    arithmetic of data.DeviceLoader, so a picture classified here gets the logits the training
    run's evaluation got, bit for bit."""
    if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be uint8 (N, 3, H, W), got {images.dtype} {tuple(images.shape)}")
    std = torch.tensor(CIFAR10_STD, device=images.device)
    scale, shift = 1 / (255 * std), -torch.tensor(CIFAR10_MEAN, device=images.device) / std     # (3,)
    x = images.to(torch.float32, memory_format=torch.channels_last)
    return x.mul_(scale[:, None, None]).add_(shift[:, None, None])


class ConvBN(nn.Sequential):
    """Conv3x3 (no bias) >> [MaxPool2d(2)] >> BN >> ReLU.

    The pool comes before the BN (as the specification and Page's network have it): the BN
    and the ReLU then run on a quarter of the pixels.
    """

    def __init__(self, c_in: int, c_out: int, pool: bool = False):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, kernel_size=3, stride=1, padding=1, bias=False)
        if pool:
            self.pool = nn.MaxPool2d(2)
        self.bn = nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU(inplace=True)


class ResBlock(nn.Module):
    """R(X) = (Conv >> BN >> ReLU >> Conv >> BN >> ReLU)(X). The caller adds X."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = ConvBN(channels, channels)
        self.conv2 = ConvBN(channels, channels)

    def forward(self, x):
        return self.conv2(self.conv1(x))


class ResLayer(nn.Module):
    """X = ConvBN(c_in -> c_out, pool); output X + ResBlock(X)."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv = ConvBN(c_in, c_out, pool=True)
        self.res = ResBlock(c_out)

    def forward(self, x):
        x = self.conv(x)
        return x + self.res(x)


class CustomResNet(nn.Module):
    """The custom ResNet of the module docstring. `forward(x)` returns logits (N, num_classes).

    width:       channels of the prep layer; the later layers have 2x, 4x and 8x it.
                 64 is the specification; tests use 8 or 16 for speed.
    logit_scale: the logits are multiplied by this constant (no parameter). Page's ResNet-9
                 uses 0.125: it keeps the initial softmax close to uniform, so the first,
                 high-LR steps do not saturate it (github.com/davidcpage/cifar10-fast).
                 1.0 gives the plain FC.
    """

    def __init__(self, num_classes: int = 10, width: int = 64, logit_scale: float = 0.125):
        super().__init__()
        w = width
        self.prep = ConvBN(3, w)                        # (N, w, 32, 32)
        self.layer1 = ResLayer(w, 2 * w)                # (N, 2w, 16, 16)
        self.layer2 = ConvBN(2 * w, 4 * w, pool=True)   # (N, 4w, 8, 8)
        self.layer3 = ResLayer(4 * w, 8 * w)            # (N, 8w, 4, 4)
        self.pool = nn.MaxPool2d(4)                     # (N, 8w, 1, 1)
        self.fc = nn.Linear(8 * w, num_classes, bias=False)
        self.logit_scale = logit_scale

    def forward(self, x):
        x = self.layer3(self.layer2(self.layer1(self.prep(x))))
        x = self.pool(x).flatten(1)                     # (N, 8w)
        return self.fc(x) * self.logit_scale            # logits: no softmax here (see above)


# The parts `summary` lists: the four stages and the pieces of the residual layers, then the head.
SUMMARY_PARTS = ("prep", "layer1", "layer1.conv", "layer1.res", "layer2", "layer3", "layer3.conv",
                 "layer3.res", "pool", "fc")


def summary(model: CustomResNet, input_size=(3, 32, 32)) -> str:
    """The layer table of a report: each part's output shape and parameter count, and the total.

    Runs one forward pass on zeros (N = 1, shown as N) under no_grad, in eval mode; the model's
    mode is restored afterwards. Indented rows (layer1.conv, ...) are inside the row above them,
    so only the unindented rows add up to the total.
    """
    shapes = {}
    handles = [model.get_submodule(name).register_forward_hook(
        lambda m, i, o, name=name: shapes.__setitem__(name, tuple(o.shape[1:])))
        for name in SUMMARY_PARTS]
    modes = [(m, m.training) for m in model.modules()]
    param = next(model.parameters())
    try:
        model.eval()
        with torch.no_grad():
            shapes["input"] = tuple(input_size)
            logits = model(torch.zeros(1, *input_size, dtype=param.dtype, device=param.device))
    finally:
        for h in handles:
            h.remove()
        for m, was_training in modes:
            m.training = was_training
    shapes["fc"] = tuple(logits.shape[1:])              # the logits, after the logit scale
    count = lambda m: sum(p.numel() for p in m.parameters())    # noqa: E731
    rows = [("input", "", shapes["input"], None)]
    rows += [(name, type(model.get_submodule(name)).__name__, shapes[name],
              count(model.get_submodule(name))) for name in SUMMARY_PARTS]
    total = count(model)
    lines = [f"{'part':<14}{'module':<12}{'output shape':<22}{'parameters':>12}", "-" * 60]
    for name, kind, shape, n in rows:
        indent = "  " * name.count(".")
        out = "(N, " + ", ".join(str(d) for d in shape) + ")"
        lines.append(f"{indent + name:<14}{kind:<12}{out:<22}{'' if n is None else f'{n:,}':>12}".rstrip())
    lines += ["-" * 60, f"{'total':<48}{total:>12,}",
              f"{'trainable':<48}{sum(p.numel() for p in model.parameters() if p.requires_grad):>12,}"]
    return "\n".join(lines)


if __name__ == "__main__":
    import argparse
    parser = argparse.ArgumentParser(description="Print the layer table of CustomResNet.")
    parser.add_argument("--width", type=int, default=64, help="channels of the prep layer (default: 64)")
    width = parser.parse_args().width
    if width < 1:
        parser.exit(2, f"error: --width must be at least 1, got {width}\n")
    print(f"CustomResNet(width={width}); forward returns logits (no softmax)")
    print(summary(CustomResNet(width=width)))
