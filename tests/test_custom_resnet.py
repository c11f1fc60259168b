"""custom_resnet.py, the network of docs/SPEC.md section 1: parameter count, shapes, names, the
order of operations, its input normalisation and its summary table."""
import os
import subprocess
import sys

import torch
from torch import nn

import custom_resnet
import data
from custom_resnet import CustomResNet, ConvBN

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_parameter_count_is_the_specifications():
    model = CustomResNet()
    assert sum(p.numel() for p in model.parameters()) == 6_573_120
    assert model.fc.bias is None and model.fc.in_features == 512 and model.fc.out_features == 10


def test_output_is_logits_of_shape_n_by_10():
    model = CustomResNet(width=8).eval()
    logits = model(torch.randn(3, 3, 32, 32))
    assert logits.shape == (3, 10)
    # Logits, not probabilities: rows need not sum to 1, and softmax of them does.
    assert not torch.allclose(logits.sum(-1), torch.ones(3))
    assert torch.allclose(logits.softmax(-1).sum(-1), torch.ones(3))


def test_every_conv_is_3x3_stride1_pad1_without_bias_and_parts_are_named():
    model = CustomResNet()
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 8
    for c in convs:
        assert c.kernel_size == (3, 3) and c.stride == (1, 1) and c.padding == (1, 1) and c.bias is None
    names = dict(model.named_modules())
    for name in ["prep", "layer1", "layer1.conv", "layer1.res", "layer2", "layer3", "layer3.res", "pool", "fc"]:
        assert name in names, name
    widths = [names[n].conv.out_channels for n in ["prep", "layer1.conv", "layer2", "layer3.conv"]]
    assert widths == [64, 128, 256, 512]
    assert names["pool"].kernel_size == 4


def test_shapes_after_each_named_part():
    model = CustomResNet(width=8).eval()
    shapes = {}
    for name in ["prep", "layer1", "layer2", "layer3", "pool"]:
        model.get_submodule(name).register_forward_hook(
            lambda m, i, o, name=name: shapes.__setitem__(name, tuple(o.shape)))
    model(torch.randn(2, 3, 32, 32))
    assert shapes == {"prep": (2, 8, 32, 32), "layer1": (2, 16, 16, 16), "layer2": (2, 32, 8, 8),
                      "layer3": (2, 64, 4, 4), "pool": (2, 64, 1, 1)}


def test_pool_comes_before_bn_before_relu_in_layers_1_to_3():
    model = CustomResNet(width=4)
    for name in ["layer1.conv", "layer2", "layer3.conv"]:
        block = model.get_submodule(name)
        assert isinstance(block, ConvBN)
        kinds = [type(m) for m in block.children()]
        assert kinds == [nn.Conv2d, nn.MaxPool2d, nn.BatchNorm2d, nn.ReLU], name
    # And the forward order really is conv -> pool -> bn -> relu: record it with hooks.
    order = []
    block = model.layer2
    for child in block.children():
        child.register_forward_hook(lambda m, i, o: order.append(type(m).__name__))
    model(torch.randn(2, 3, 32, 32))
    assert order == ["Conv2d", "MaxPool2d", "BatchNorm2d", "ReLU"]


def test_residual_layers_add_the_block_to_its_input():
    model = CustomResNet(width=4).eval()
    for layer, c_in, size in [(model.layer1, 4, 32), (model.layer3, 16, 8)]:
        inp = torch.randn(2, c_in, size, size)
        h = layer.conv(inp)                                    # X = ConvBN with pool
        r = layer.res.conv2(layer.res.conv1(h))                # R = (Conv >> BN >> ReLU) x 2
        assert torch.allclose(layer(inp), h + r)
        assert not torch.allclose(layer(inp), r)               # the skip really is there


def test_logit_scale_multiplies_the_fc_output():
    torch.manual_seed(0)
    a = CustomResNet(width=4).eval()
    b = CustomResNet(width=4, logit_scale=1.0).eval()
    b.load_state_dict(a.state_dict())
    x = torch.randn(2, 3, 32, 32)
    assert torch.allclose(a(x), 0.125 * b(x), atol=1e-6)


def test_custom_resnet_imports_only_torch():
    import subprocess
    import sys
    # Whatever `import torch` itself loads is fine; custom_resnet must add nothing else.
    code = ("import sys, torch; before = set(sys.modules); import custom_resnet; "
            "new = {m.split('.')[0] for m in set(sys.modules) - before} - {'custom_resnet'}; "
            "assert not new, new")
    import os
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    subprocess.run([sys.executable, "-c", code], cwd=root, check=True)


def test_normalize_is_the_training_loaders_arithmetic_bit_for_bit():
    images = torch.randint(0, 256, (5, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    loader = data.DeviceLoader(images, torch.zeros(5, dtype=torch.long), 5, train=False, device="cpu")
    x = custom_resnet.normalize(images)
    assert torch.equal(x, loader.normalize(images)) and x.is_contiguous(memory_format=torch.channels_last)
    mean = torch.tensor(custom_resnet.CIFAR10_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(custom_resnet.CIFAR10_STD).view(1, 3, 1, 1)
    torch.testing.assert_close(x, (images.float() / 255 - mean) / std)
    assert custom_resnet.CLASSES[3] == "cat" and len(custom_resnet.CLASSES) == 10


def test_summary_lists_every_part_and_the_specifications_total():
    text = custom_resnet.summary(CustomResNet())
    rows = {line.split()[0]: line for line in text.splitlines() if line and line[0] not in "- "}
    assert rows["total"].split()[-1] == "6,573,120"
    assert "(N, 256, 8, 8)" in rows["layer2"] and "(N, 512, 4, 4)" in rows["layer3"] and "(N, 10)" in rows["fc"]
    count = lambda line: int(line.split()[-1].replace(",", ""))            # noqa: E731
    top = [count(rows[n]) for n in ("prep", "layer1", "layer2", "layer3", "pool", "fc")]
    assert sum(top) == 6_573_120                              # the top-level rows add up
    assert "  layer1.res " in text                            # parts inside a layer are indented
    model = CustomResNet(width=8).train()
    small = custom_resnet.summary(model)
    assert model.training                                     # its mode is given back
    assert small.splitlines()[-2].split()[-1] == f"{sum(p.numel() for p in model.parameters()):,}"


def test_python_custom_resnet_py_prints_the_table():
    r = subprocess.run([sys.executable, "custom_resnet.py"], cwd=ROOT, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    assert "layer3" in r.stdout and r.stdout.strip().splitlines()[-2].endswith("6,573,120")
