"""Tests for gradcam.py: CPU, tiny models, a few seconds in all.

The main check (as minGPT tests its model against a reference) compares GradCAM with the
Grad-CAM formula (Selvaraju et al., arXiv:1610.02391) computed independently: the model run by
hand up to the layer, dY_c/dA taken per image with torch.autograd.grad, in float64.
"""
import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import gradcam
from custom_resnet import CustomResNet

N, WIDTH = 3, 4     # batch and network width: small enough for a shared 2-core CPU


def _randomise_bn(model, seed=1):
    """Random BN affine parameters and running statistics, so eval-mode BN is not the identity."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            c = m.num_features
            m.weight.data = 0.5 + torch.rand(c, generator=g)
            m.bias.data = 0.2 * torch.randn(c, generator=g)
            m.running_mean = 0.2 * torch.randn(c, generator=g)
            m.running_var = 0.5 + torch.rand(c, generator=g)
    return model


def _model(dtype=torch.float32):
    torch.manual_seed(0)
    return _randomise_bn(CustomResNet(num_classes=10, width=WIDTH)).to(dtype).eval()


def _images(dtype=torch.float32, n=N, seed=0):
    return torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def _hook_counts(model):
    names = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks",
             "_forward_hooks_with_kwargs", "_forward_hooks_always_called")
    return {(name, attr): len(getattr(m, attr))
            for name, m in model.named_modules() for attr in names if hasattr(m, attr)}


# ----- the reference: Grad-CAM by hand ---------------------------------------------------------
def _split(model, layer):
    """(up to and including `layer`, from there to the logits) for CustomResNet, by hand."""
    head = lambda a: model.fc(model.pool(a).flatten(1)) * model.logit_scale    # noqa: E731
    if layer == "layer3":
        return (lambda x: model.layer3(model.layer2(model.layer1(model.prep(x)))), head)
    if layer == "layer1":
        return (lambda x: model.layer1(model.prep(x)),
                lambda a: head(model.layer3(model.layer2(a))))
    raise KeyError(layer)


def _normalise_upsample(cam, size):
    """(N, h, w) -> min-max per image -> bilinear (N, H, W): the formula's last steps."""
    lo, hi = cam.amin((1, 2), keepdim=True), cam.amax((1, 2), keepdim=True)
    cam = (cam - lo) / torch.where(hi > lo, hi - lo, torch.ones_like(hi))
    return F.interpolate(cam[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]


def _reference_cam(before, after, x, targets):
    """Grad-CAM one image at a time (no batching trick): A, dY_c/dA, ReLU(sum_k mean(dY/dA_k) A_k)."""
    cams, preds = [], []
    for i in range(x.shape[0]):
        a = before(x[i:i + 1])                                 # (1, K, h, w), in the graph
        logits = after(a)                                      # (1, num_classes)
        c = int(logits.argmax(1)) if targets is None else int(targets[i])
        (grad,) = torch.autograd.grad(logits[0, c], a)         # (1, K, h, w)
        alpha = grad.mean(dim=(2, 3))                          # (1, K)
        cams.append(torch.relu((alpha[:, :, None, None] * a.detach()).sum(1)))
        preds.append(logits.argmax(1))
    return _normalise_upsample(torch.cat(cams), x.shape[2:]), torch.cat(preds)


# ----- 1. agreement with the formula -----------------------------------------------------------
@pytest.mark.parametrize("layer", ["layer3", "layer1"])
@pytest.mark.parametrize("targets", [None, [4, 5, 8]])
def test_matches_independent_formula(layer, targets):
    model, x = _model(torch.float64), _images(torch.float64)
    ref, ref_pred = _reference_cam(*_split(model, layer), x, targets)
    assert (ref.amax((1, 2)) > 0.5).all(), "degenerate reference: pick another seed"
    with gradcam.GradCAM(model, layer) as cam:
        out = cam(x, targets)
    assert out.dtype == torch.float32 and out.shape == (N, 32, 32)
    torch.testing.assert_close(out, ref.float(), atol=1e-5, rtol=0)
    assert torch.equal(cam.logits.argmax(1), ref_pred)
    assert cam.logits.shape == (N, 10) and not cam.logits.requires_grad


def test_float32_matches_reference_and_target_forms_agree():
    model, x = _model(), _images()
    ref, _ = _reference_cam(*_split(model, "layer3"), x, [5, 5, 5])
    with gradcam.GradCAM(model, model.layer3) as cam:           # the module, not its name
        outs = [cam(x, t) for t in (5, [5, 5, 5], (5, 5, 5), torch.tensor([5, 5, 5]))]
    for out in outs:
        torch.testing.assert_close(out, ref, atol=1e-4, rtol=0)


def test_batch_independence():
    # One image's map must not depend on the other images of the batch (eval-mode BN).
    model, x = _model(), _images()
    with gradcam.GradCAM(model, "layer3") as cam:
        together = cam(x, [1, 2, 3])
        alone = torch.cat([cam(x[i:i + 1], [t]) for i, t in enumerate([1, 2, 3])])
    torch.testing.assert_close(together, alone, atol=1e-5, rtol=0)


# ----- 2. hooks do not leak --------------------------------------------------------------------
def test_hooks_removed_after_with_close_and_error():
    model, x = _model(), _images()
    before = _hook_counts(model)
    assert sum(before.values()) == 0
    with gradcam.GradCAM(model, "layer1.res") as cam:
        assert len(model.layer1.res._forward_hooks) == 1
        cam(x)
    assert _hook_counts(model) == before

    cam = gradcam.GradCAM(model, "layer2")
    cam(x)
    cam.close()
    cam.close()                                                  # idempotent
    assert _hook_counts(model) == before
    with pytest.raises(RuntimeError, match="closed"):
        cam(x)

    with pytest.raises(ZeroDivisionError):                       # an error inside the block
        with gradcam.GradCAM(model, "layer3"):
            1 / 0
    assert _hook_counts(model) == before


def test_hook_idle_outside_calls():
    # While open, ordinary forwards (even under no_grad, where no tensor hook can be registered)
    # must work and record nothing.
    model, x = _model(), _images()
    with gradcam.GradCAM(model, "layer3") as cam:
        with torch.no_grad():
            model(x)
        model(x).sum().backward()
        assert cam.activations is None and cam._captured == [] and cam._tensor_hooks == []


def test_unknown_layer_name():
    with pytest.raises(ValueError, match="layer9.*valid names include.*'prep'"):
        gradcam.GradCAM(_model(), "layer9")
    with pytest.raises(ValueError, match="not a submodule"):
        gradcam.GradCAM(_model(), nn.Conv2d(3, 3, 3))


# ----- 3. targets are validated, never truncated -----------------------------------------------
def test_bad_targets():
    model, x = _model(), _images()
    with gradcam.GradCAM(model, "layer3") as cam:
        for wrong in ([1, 2], [1, 2, 3, 4], torch.tensor([1])):
            n = len(wrong)
            with pytest.raises(ValueError, match=f"{n} targets for a batch of {N}"):
                cam(x, wrong)
        for out_of_range in ([0, 10, 1], [-1, 0, 0], 10):
            with pytest.raises(ValueError, match=r"\[0, 10\)"):
                cam(x, out_of_range)
        with pytest.raises(TypeError):
            cam(x, [0.5, 1.0, 2.0])
        cam(x, [9, 0, 1])                                        # still usable after errors


# ----- 4. a target layer followed by an in-place ReLU ------------------------------------------
def test_inplace_relu_after_target_layer():
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 6, 3, padding=1)
    rest = nn.Sequential(nn.Conv2d(6, 5, 3, padding=1), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
                         nn.Linear(20, 4))
    model = nn.Sequential(conv, nn.ReLU(inplace=True), rest).double().eval()
    x, targets = _images(torch.float64, n=2, seed=3)[:, :, :8, :8], [1, 2]

    with gradcam.GradCAM(model, conv) as cam:
        out = cam(x, targets)
    with torch.no_grad():
        pre_relu = conv(x)                                       # (2, 6, 8, 8), no hooks
    assert (pre_relu < 0).any()                                  # else the test proves nothing
    torch.testing.assert_close(cam.activations, pre_relu)        # not overwritten by the ReLU

    # Reference: A = conv(x), the rest with an out-of-place ReLU, dY/dA w.r.t. the pre-ReLU A.
    cams = []
    for i, c in enumerate(targets):
        a = conv(x[i:i + 1])
        (grad,) = torch.autograd.grad(rest(torch.relu(a))[0, c], a)
        torch.testing.assert_close(cam.gradients[i:i + 1], grad)
        cams.append(torch.relu((grad.mean((2, 3))[:, :, None, None] * a.detach()).sum(1)))
    ref = _normalise_upsample(torch.cat(cams), (8, 8))
    torch.testing.assert_close(out, ref.float(), atol=1e-5, rtol=0)

    # The fault this guards against: post-ReLU activations with pre-ReLU gradients differ.
    wrong = torch.relu((cam.gradients.mean((2, 3))[:, :, None, None] * pre_relu.relu()).sum(1))
    assert not torch.allclose(out, _normalise_upsample(wrong, (8, 8)).float(), atol=1e-3)


# ----- 5. no side effects on the model ----------------------------------------------------------
def test_modes_bn_stats_and_grads_untouched():
    model, x = _model(), _images()
    model.train()
    model.layer2.bn.eval()                                       # a mixed-mode model
    modes = {name: m.training for name, m in model.named_modules()}
    stats = {k: v.clone() for k, v in model.state_dict().items()}
    model.fc.weight.grad = torch.full_like(model.fc.weight, 7.0)    # a .grad already set
    assert model.prep.conv.weight.grad is None                      # and one that is not

    with gradcam.GradCAM(model, "layer3") as cam:
        out = cam(x)
        with pytest.raises(ValueError):                          # fails after the forward
            cam(x, [0, 0, 99])
    assert {name: m.training for name, m in model.named_modules()} == modes
    for k, v in model.state_dict().items():                      # running stats included
        assert torch.equal(v, stats[k]), k
    assert torch.equal(model.fc.weight.grad, torch.full_like(model.fc.weight, 7.0))
    assert all(p.grad is None for n, p in model.named_parameters() if n != "fc.weight")

    # The map is the eval-mode one, whatever mode the model was in.
    with gradcam.GradCAM(model.eval(), "layer3") as cam:
        torch.testing.assert_close(out, cam(x), atol=1e-6, rtol=0)


def test_frozen_parameters_no_grad_and_inference_mode():
    model, x = _model(), _images()
    with gradcam.GradCAM(model, "layer3") as cam:
        expected = cam(x)
    for p in model.parameters():
        p.requires_grad_(False)
    with gradcam.GradCAM(model, "layer3") as cam:
        torch.testing.assert_close(cam(x), expected, atol=1e-6, rtol=0)
        with torch.no_grad():
            torch.testing.assert_close(cam(x), expected, atol=1e-6, rtol=0)
        with torch.inference_mode():
            x_inf = x.clone()
            with pytest.raises(RuntimeError, match="inference_mode"):
                cam(x)
        torch.testing.assert_close(cam(x_inf), expected, atol=1e-6, rtol=0)  # inference tensor
    assert all(p.grad is None for p in model.parameters())


# ----- 6. shape, range, normalisation, memory format, autocast ---------------------------------
def test_range_and_normalisation_do_not_depend_on_the_logit_scale():
    model, x = _model(), _images()
    # The tiny random net's raw maps at "prep" span only ~1e-6: exact min-max normalisation
    # must still stretch them to [0, 1] (pytorch-grad-cam's +1e-7 would dim them to ~0.9).
    with gradcam.GradCAM(model, "prep") as cam:                  # 32x32 map: no upsampling
        out = cam(x, [4, 5, 8])
    assert out.shape == (N, 32, 32) and out.dtype == torch.float32
    for m in out:
        if m.max() > 0:                                          # min 0, max 1 per image
            assert m.min().item() == 0.0 and abs(m.max().item() - 1.0) < 1e-5
    with gradcam.GradCAM(model, "layer3") as cam:                # 4x4 map upsampled to 32x32
        out = cam(x)
    assert out.shape == (N, 32, 32) and 0 <= out.min() and out.max() <= 1
    assert (out.amax((1, 2)) > 0.9).all() and (out.amin((1, 2)) < 0.1).all()


def test_all_zero_map_stays_zero():
    # A zero FC makes every gradient zero: the map must be 0, not NaN.
    model, x = _model(), _images()
    nn.init.zeros_(model.fc.weight)
    with gradcam.GradCAM(model, "layer3") as cam:
        out = cam(x)
    assert torch.equal(out, torch.zeros(N, 32, 32))


def test_channels_last_and_autocast():
    model, x = _model(), _images()
    with gradcam.GradCAM(model, "layer3") as cam:
        expected = cam(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):        # computed in float32 anyway
            torch.testing.assert_close(cam(x), expected, atol=1e-5, rtol=0)
    model_cl = copy.deepcopy(model).to(memory_format=torch.channels_last)
    with gradcam.GradCAM(model_cl, "layer3") as cam:
        out = cam(x.to(memory_format=torch.channels_last))
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)


# ----- 7. jet and overlay ------------------------------------------------------------------------
def test_jet_is_matplotlibs():
    c = gradcam.jet(torch.tensor([0.0, 1.0]))
    torch.testing.assert_close(c, torch.tensor([[0, 0, 0.5], [0.5, 0, 0]]))
    assert gradcam.jet(torch.rand(2, 5, 7)).shape == (2, 5, 7, 3)
    mpl = pytest.importorskip("matplotlib")
    v = torch.cat([torch.linspace(0, 1, 1001), torch.tensor([-0.5, 1.5, 0.35, 0.66])])   # knots, out of range
    ref = torch.tensor(mpl.colormaps["jet"](v.clamp(0, 1).numpy())[:, :3], dtype=torch.float32)
    torch.testing.assert_close(gradcam.jet(v), ref, atol=1e-6, rtol=0)


def test_blend_lays_the_map_over_the_picture():
    pictures = torch.full((1, 2, 2, 3), 0.5)
    cams = torch.tensor([[[0.0, 1.0], [0.25, 0.75]]])
    torch.testing.assert_close(gradcam.blend(pictures, cams, alpha=0.0), pictures)
    torch.testing.assert_close(gradcam.blend(pictures, cams, alpha=1.0), gradcam.jet(cams))
    torch.testing.assert_close(gradcam.blend(pictures, cams, alpha=0.3), 0.7 * pictures + 0.3 * gradcam.jet(cams))
    with pytest.raises(ValueError, match="alpha"):
        gradcam.blend(pictures, cams, alpha=-0.1)


def test_map_sizes_list_the_layers_with_a_map_and_their_sizes():
    model = _model().train()
    sizes = gradcam.map_sizes(model, torch.zeros(1, 3, 32, 32))
    assert model.training                                           # its mode is given back
    assert list(sizes)[:5] == ["prep", "prep.conv", "prep.bn", "prep.relu", "layer1"]
    assert sizes["layer1"] == (16, 16) and sizes["layer1.conv.conv"] == (32, 32)     # before its pool
    assert sizes["layer3"] == (4, 4) and "pool" not in sizes and "fc" not in sizes   # 1x1, and no map
    with gradcam.GradCAM(model, "layer1.conv.conv") as cam:             # every name is a valid target
        assert cam(_images()).shape == (N, 32, 32)
    message = gradcam.unknown_layer("layer4", sizes)
    assert message.startswith("unknown Grad-CAM layer 'layer4' (did you mean 'layer3'?); valid: prep (32x32), "
                              "layer1 (16x16), layer2 (8x8), layer3 (4x4), or a part inside them: prep.conv")


def test_overlay():
    x = _images()
    cams = torch.rand(N, 32, 32, generator=torch.Generator().manual_seed(1))
    out = gradcam.overlay(x, cams)
    assert out.shape == (N, 32, 32, 3) and 0 <= out.min() and out.max() <= 1

    mean = torch.tensor(gradcam.CIFAR10_MEAN)[:, None, None]
    std = torch.tensor(gradcam.CIFAR10_STD)[:, None, None]
    image = (x * std + mean).clamp(0, 1).permute(0, 2, 3, 1)
    torch.testing.assert_close(gradcam.overlay(x, cams, alpha=0.0), image, atol=1e-7, rtol=0)
    torch.testing.assert_close(gradcam.overlay(x, cams, alpha=1.0), gradcam.jet(cams))
    torch.testing.assert_close(out, 0.5 * image + 0.5 * gradcam.jet(cams))

    with pytest.raises(ValueError, match="alpha"):
        gradcam.overlay(x, cams, alpha=1.5)
    with pytest.raises(ValueError, match="cams shape"):
        gradcam.overlay(x, cams[:2])
    with pytest.raises(ValueError, match="images"):
        gradcam.overlay(x[:, :1], cams)
    with pytest.raises(ValueError, match="cams"):
        gradcam.overlay(x, cams[0])


def test_an_empty_batch_gives_empty_maps():
    model = _model()
    with gradcam.GradCAM(model, "layer3") as cam:
        out = cam(torch.zeros(0, 3, 32, 32), [])
    assert out.shape == (0, 32, 32)


def test_a_device_without_autocast_still_gets_maps(monkeypatch):
    """MPS before torch 2.5 refuses torch.autocast even with enabled=False."""
    model, x = _model(), _images()
    with gradcam.GradCAM(model, "layer3") as cam:
        expected = cam(x)

    def no_autocast(*args, **kwargs):
        raise RuntimeError("User specified an unsupported autocast device_type 'mps'")
    monkeypatch.setattr(torch, "autocast", no_autocast)
    with gradcam.GradCAM(model, "layer3") as cam:
        torch.testing.assert_close(cam(x), expected, atol=0, rtol=0)
