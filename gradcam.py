"""Grad-CAM: which pixels made the network say "cat"?

Imports torch only, so this file can be copied into coursework on its own.

Grad-CAM (Selvaraju et al., "Grad-CAM: Visual Explanations from Deep Networks via
Gradient-based Localization", 2017, arXiv:1610.02391) takes the feature maps A^k of one layer,
A of shape (K, h, w), and weights each map by how much the class score grows when that map grows:

    alpha_k^c = 1/(h*w) * sum_{i,j} dY_c / dA^k_ij          (global-average-pooled gradient)
    CAM_c     = ReLU( sum_k alpha_k^c A^k )                  (h, w)

Y_c is the class score BEFORE the softmax (the logit), as in the paper (section 3): the softmax
couples the classes, so its gradient for class c also depends on how strong every other class is.
The ReLU keeps only the regions that push the score for c up. The map is then min-max normalised
per image to [0, 1] and upsampled bilinearly to the input's size, so it can be laid over the image.

Usage:

    import gradcam
    with gradcam.GradCAM(model, "layer2") as cam:          # a name, or the module itself
        maps = cam(images)                                  # (N, 32, 32) in [0, 1], predicted class
        maps = cam(images, targets=labels)                  # or the classes you ask about
        predicted = cam.logits.argmax(1)                    # logits of that call, no 2nd forward
    pictures = gradcam.overlay(images, maps)                # (N, 32, 32, 3), for plt.imshow

Which layer: the last convolutional stage ("layer3", 4x4 for CIFAR-10) is the paper's choice, but its
map is coarse, and the course's graders refuse maps under 5x5 pixels; "layer2" (8x8) keeps parts of
the object and stays about the class; "layer1" (16x16) shows edges more than the class.

What it matches: pytorch-grad-cam 1.5.7's `GradCAM` (github.com/jacobgil/pytorch-grad-cam): same
weights (mean gradient over space), ReLU, per-image min-max normalisation, then a bilinear
resize. (It divides by max - min, where pytorch-grad-cam divides by max - min + 1e-7: the same
wherever the range is well above 1e-7, and independent of the logits' scale everywhere.) What it avoids, the known faults of that package:
  * hooks that leak: `close()` (or leaving the `with` block) removes every hook this object
    registered, and a tensor hook never outlives the call that registered it;
  * pairing activations taken AFTER an in-place ReLU with gradients taken BEFORE it: the forward
    hook there keeps `output.detach()`, which shares memory with the output, so a following
    `nn.ReLU(inplace=True)` overwrites the stored activations (on the CPU, where `.cpu()` does
    not copy). Here the activations are cloned, and the gradient hook is registered on the same
    tensor before the in-place op; autograd then hands that hook the gradient with respect to the
    value before the in-place op (pytorch.org/docs/stable/notes/autograd.html, "Behavior of
    Tensor hooks when Tensor is modified in-place"). Both are pre-ReLU, as the formula needs;
  * a targets list shorter than the batch silently truncating the batch (it zips them): here a
    wrong length is a ValueError.

Grad mode: the call runs under `torch.enable_grad()`, so it works inside `torch.no_grad()`.
`torch.inference_mode()` cannot be switched off from inside (its tensors never record a graph), so
a call inside it raises RuntimeError: call it outside.
"""
import contextlib

import torch
import torch.nn.functional as F
from torch import nn

# Per-channel mean and std of the CIFAR-10 training images (RGB, pixel values in [0, 1]), the
# values most CIFAR-10 code normalises with. `overlay` undoes that normalisation. If your data
# pipeline uses other values, pass them to `overlay`.
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)


class GradCAM:
    """Grad-CAM maps for one layer of a classifier whose forward returns logits (N, num_classes).

    model:        the classifier (an nn.Module).
    target_layer: an nn.Module inside `model`, or its dotted name ("layer3", "layer1.res").
                  Its output must be one (N, K, h, w) tensor, computed once per forward.

    After a call, `logits` (N, num_classes), `activations` (N, K, h, w) and `gradients`
    (N, K, h, w) hold that call's values, detached.
    """

    def __init__(self, model: nn.Module, target_layer):
        self.model = model
        if isinstance(target_layer, str):
            try:
                target_layer = model.get_submodule(target_layer)
            except AttributeError:
                names = [n for n, _ in model.named_modules() if n]
                hint = ", ".join(repr(n) for n in names[:8]) + (", ..." if len(names) > 8 else "")
                raise ValueError(f"model has no submodule {target_layer!r}; valid names include "
                                 f"{hint}") from None
        elif not isinstance(target_layer, nn.Module):
            raise TypeError(f"target_layer must be an nn.Module or a name, not {type(target_layer)}")
        if not any(m is target_layer for m in model.modules()):
            raise ValueError("target_layer is not a submodule of model")
        self.target_layer = target_layer
        self.logits = self.activations = self.gradients = None
        self._active = False        # the forward hook records only inside __call__
        self._captured = []         # activations recorded during the current call
        self._tensor_hooks = []     # handles of the gradient hooks of the current call
        self._grads = []
        self._handle = target_layer.register_forward_hook(self._forward_hook)

    # ----- hooks -------------------------------------------------------------------------------
    def _forward_hook(self, module, inputs, output):
        # Outside a call (ordinary training or evaluation while this object is open) do nothing:
        # no copy, no graph, and no failure under no_grad where the output cannot take a hook.
        if not self._active:
            return
        if not isinstance(output, torch.Tensor) or output.dim() != 4:
            raise TypeError("Grad-CAM needs the target layer to return one (N, K, h, w) tensor, "
                            f"got {type(output).__name__} "
                            f"{tuple(output.shape) if isinstance(output, torch.Tensor) else ''}")
        if not output.requires_grad:
            raise RuntimeError("the target layer's output does not require grad, so no gradient "
                               "can reach it (is its output detached inside the model?)")
        # Clone: a later in-place op (nn.ReLU(inplace=True)) would otherwise change the stored
        # values. The tensor hook goes on `output` itself, registered now, before any in-place
        # op, so it receives dY/d(output as it is now): activations and gradients stay paired.
        self._captured.append(output.detach().clone())                      # (N, K, h, w)
        self._tensor_hooks.append(output.register_hook(self._grads.append))

    def _check_open(self):
        if self._handle is None:
            raise RuntimeError("this GradCAM was closed (its hooks are removed); create a new one")

    # ----- the map -----------------------------------------------------------------------------
    def cam(self, x: torch.Tensor, targets=None) -> torch.Tensor:
        """Grad-CAM maps (N, H, W), float32 in [0, 1], on x's device.

        x:       (N, C, H, W) normalised images, as the model takes them.
        targets: None for each image's predicted class (argmax of the logits); an int for the
                 same class for every image; or a sequence / integer tensor of N class indices.
        """
        self._check_open()
        if not isinstance(x, torch.Tensor) or x.dim() != 4:
            raise ValueError(f"x must be an (N, C, H, W) tensor, got "
                             f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x)}")
        if torch.is_inference_mode_enabled():
            raise RuntimeError("GradCAM needs autograd, which torch.inference_mode() switches off "
                               "for good; call it outside inference_mode (no_grad is fine)")
        n, _, height, width = x.shape
        targets = _as_targets(targets, n, x.device)              # (N,) long, or None
        if n == 0:                                               # nothing to explain
            return torch.zeros(0, height, width, device=x.device)

        # Evaluation mode: BN uses its running statistics, so (a) the images of a batch are
        # independent and the batched gradient below is each image's own, and (b) the running
        # statistics are not updated by this call. Each module's mode is restored afterwards
        # (a model may mix modes, e.g. frozen BN layers in a training model).
        modes = [(m, m.training) for m in self.model.modules()]
        self.model.eval()
        self._active, self._captured, self._grads = True, [], []
        try:
            # A fresh leaf that requires grad: the gradient reaches the layer even when every
            # parameter is frozen. clone() also turns an inference-mode tensor into a normal one.
            x_req = x.detach().clone().requires_grad_(True)
            # Autocast off: the map is computed in the model's own precision (float32 normally),
            # not bf16/fp16, whose rounding is visible in a min-max normalised map.
            with torch.enable_grad(), _autocast_off(x.device.type):
                logits = self.model(x_req)                         # (N, num_classes)
                if logits.dim() != 2 or logits.shape[0] != n:
                    raise ValueError(f"model output must be logits (N, num_classes) with N={n}, "
                                     f"got {tuple(logits.shape)}")
                if len(self._captured) != 1:
                    raise RuntimeError(f"the target layer ran {len(self._captured)} times in one "
                                       "forward; Grad-CAM needs exactly once")
                num_classes = logits.shape[1]
                if targets is None:
                    targets = logits.detach().argmax(1)            # (N,)
                elif targets.min() < 0 or targets.max() >= num_classes:
                    raise ValueError(f"targets must be class indices in [0, {num_classes}), got "
                                     f"values from {targets.min().item()} to "
                                     f"{targets.max().item()}")
                # The logit, not the softmax (paper, section 3). In eval mode image i's score
                # depends on image i only, so d(sum_i Y_i)/dA_i = dY_i/dA_i: one backward pass
                # gives every image its own gradient.
                score = logits.gather(1, targets[:, None]).sum()
                # autograd.grad, not backward(): nothing accumulates into any parameter's .grad.
                # The tensor hook fires on the way to x_req and records dY/dA.
                torch.autograd.grad(score, x_req)
            if len(self._grads) != 1:
                raise RuntimeError("no gradient reached the target layer")
            acts, grads = self._captured[0], self._grads[0].detach()   # (N, K, h, w) each
        finally:
            self._active = False
            for h in self._tensor_hooks:
                h.remove()
            self._tensor_hooks, self._captured, self._grads = [], [], []
            for m, was_training in modes:
                m.training = was_training

        self.logits, self.activations, self.gradients = logits.detach(), acts, grads
        # At least float32 (float64 stays float64 until the end, for exact tests).
        dtype = torch.promote_types(acts.dtype, torch.float32)
        acts, grads = acts.to(dtype), grads.to(dtype)
        weights = grads.mean(dim=(2, 3))                                   # (N, K): alpha_k^c
        cam = torch.relu((weights[:, :, None, None] * acts).sum(1))        # (N, h, w)
        # Min-max per image. pytorch-grad-cam divides by (max - min + 1e-7), which dims a map
        # whose raw values span less than about 1e-5 (tiny logits, e.g. an untrained net's early
        # layers) and so makes the map depend on the logits' scale. Dividing by the exact range
        # gives the same map wherever that epsilon is negligible, and keeps Grad-CAM scale-free;
        # a map that is all zero (ReLU killed everything) stays zero.
        lo = cam.amin(dim=(1, 2), keepdim=True)
        hi = cam.amax(dim=(1, 2), keepdim=True)
        cam = (cam - lo) / torch.where(hi > lo, hi - lo, torch.ones_like(hi))
        # Bilinear upsampling to the input's size; align_corners=False is the half-pixel
        # convention of cv2.resize, which pytorch-grad-cam uses.
        cam = F.interpolate(cam[:, None], size=(height, width), mode="bilinear",
                            align_corners=False)[:, 0]                    # (N, H, W)
        return cam.clamp(0, 1).to(device=x.device, dtype=torch.float32).contiguous()

    __call__ = cam

    # ----- lifetime ----------------------------------------------------------------------------
    def close(self):
        """Remove every hook this object registered. Safe to call twice."""
        if self._handle is not None:
            self._handle.remove()
            self._handle = None
        for h in self._tensor_hooks:
            h.remove()
        self._tensor_hooks = []

    def __enter__(self):
        self._check_open()
        return self

    def __exit__(self, *exc):
        self.close()
        return False


def _autocast_off(device_type):
    """Autocast switched off on this device type. Where the device has no autocast at all (MPS
    before torch 2.5 refuses even enabled=False), nothing can be on to switch off."""
    try:
        return torch.autocast(device_type=device_type, enabled=False)
    except RuntimeError:
        return contextlib.nullcontext()


def _as_targets(targets, n: int, device) -> torch.Tensor:
    """None -> None; int -> (n,) filled; sequence / tensor of n ints -> (n,) long on `device`."""
    if targets is None:
        return None
    if isinstance(targets, bool):
        raise TypeError("targets must be class indices, not a bool")
    if isinstance(targets, int):
        return torch.full((n,), targets, dtype=torch.long, device=device)
    t = torch.as_tensor(targets, device=device)
    if t.numel() == 0:
        t = t.long()                       # torch.as_tensor([]) is float: an empty list is fine
    if t.dim() == 0:
        t = t.expand(n)
    if t.dim() != 1:
        raise ValueError(f"targets must be 1-D, got shape {tuple(t.shape)}")
    if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
        raise TypeError(f"targets must be integer class indices, got dtype {t.dtype}")
    if t.shape[0] != n:
        # Never truncate or broadcast silently: a short list means the caller lost track.
        raise ValueError(f"got {t.shape[0]} targets for a batch of {n} images; "
                         "give one class per image")
    return t.long()


# matplotlib's "jet" (its _jet_data): for each channel, (position, value) knots joined linearly.
_JET_KNOTS = (((0.0, 0.0), (0.35, 0.0), (0.66, 1.0), (0.89, 1.0), (1.0, 0.5)),                # red
              ((0.0, 0.0), (0.125, 0.0), (0.375, 1.0), (0.64, 1.0), (0.91, 0.0), (1.0, 0.0)),  # green
              ((0.0, 0.5), (0.11, 1.0), (0.34, 1.0), (0.65, 0.0), (1.0, 0.0)))                 # blue


def _piecewise_linear(x, knots):
    """The polyline through `knots` ((position, value), ...) evaluated at x (positions in 0..1)."""
    out = torch.zeros_like(x)
    for (x0, y0), (x1, y1) in zip(knots[:-1], knots[1:]):
        inside = (x >= x0) & (x <= x1)
        out = torch.where(inside, y0 + (y1 - y0) * (x - x0) / (x1 - x0), out)
    return out


def map_sizes(model: nn.Module, x: torch.Tensor) -> dict:
    """Where Grad-CAM can be taken: {name: (h, w)} for every submodule of `model` whose output,
    for the input x (N, C, H, W), is one (N, K, h, w) feature map of more than one pixel, in the
    order of model.named_modules(). One forward pass under no_grad, in eval mode (each module's
    mode is given back). For the custom ResNet on 32x32 images: prep (32, 32), layer1 (16, 16),
    layer2 (8, 8), layer3 (4, 4) and the parts inside them; not its pool (1x1) or fc (no map)."""
    sizes = {}

    def record(name):
        def hook(module, inputs, out):            # returns None: the output is left alone
            if isinstance(out, torch.Tensor) and out.dim() == 4 and out.shape[-2] * out.shape[-1] > 1:
                sizes.setdefault(name, tuple(out.shape[-2:]))
        return hook
    handles = [module.register_forward_hook(record(name)) for name, module in model.named_modules() if name]
    modes = [(m, m.training) for m in model.modules()]
    try:
        model.eval()
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
        for m, was_training in modes:
            m.training = was_training
    return {name: sizes[name] for name, _ in model.named_modules() if name in sizes}


def unknown_layer(name, sizes: dict) -> str:
    """The message for a layer name that is not a key of `sizes` (from map_sizes): the closest
    name, the top-level parts with their map sizes, then the parts inside them."""
    import difflib
    near = difflib.get_close_matches(str(name), list(sizes), 1)
    hint = f" (did you mean {near[0]!r}?)" if near else ""
    top = ", ".join(f"{n} ({h}x{w})" for n, (h, w) in sizes.items() if "." not in n)
    inside = ", ".join(n for n in sizes if "." in n)
    return f"unknown Grad-CAM layer {name!r}{hint}; valid: {top}, or a part inside them: {inside}"


def jet(x: torch.Tensor) -> torch.Tensor:
    """matplotlib's 'jet' colormap in pure torch: (...) in [0, 1] -> (..., 3) RGB in [0, 1].

    As matplotlib computes it: the value picks one of 256 entries, floor(256 x) (255 for x = 1),
    and entry i is the polyline of the knots at i / 255. jet(0) = (0, 0, 0.5) dark blue,
    jet(1) = (0.5, 0, 0) dark red."""
    x = torch.as_tensor(x)
    x = (x if x.is_floating_point() else x.float()).clamp(0, 1)
    entry = (x * 256).floor().clamp(max=255) / 255                              # matplotlib's LUT
    return torch.stack([_piecewise_linear(entry, knots) for knots in _JET_KNOTS], dim=-1)


def blend(pictures: torch.Tensor, cams: torch.Tensor, alpha: float = 0.5) -> torch.Tensor:
    """(1 - alpha) * pictures + alpha * jet(cams): a map laid over its image.

    pictures: (N, H, W, 3) in [0, 1] (what plt.imshow takes); cams: (N, H, W) in [0, 1].
    Returns (N, H, W, 3) in [0, 1], float32, on the CPU."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    pictures = torch.as_tensor(pictures).detach().float().cpu()
    heat = jet(torch.as_tensor(cams).detach().float().cpu())                 # (N, H, W, 3)
    return ((1 - alpha) * pictures + alpha * heat).clamp(0, 1)


def overlay(images: torch.Tensor, cams: torch.Tensor, alpha: float = 0.5,
            mean=CIFAR10_MEAN, std=CIFAR10_STD) -> torch.Tensor:
    """Blend Grad-CAM maps over the images: (N, H, W, 3) in [0, 1], on the CPU, for plt.imshow.

    images: (N, 3, H, W) normalised images; de-normalised with mean/std (3 floats each) and
            clamped to [0, 1].
    cams:   (N, H, W) maps in [0, 1], e.g. from GradCAM.
    alpha:  weight of the heat map: (1 - alpha) * image + alpha * jet(cam).
    """
    if not isinstance(images, torch.Tensor) or images.dim() != 4 or images.shape[1] != 3:
        raise ValueError("images must be an (N, 3, H, W) tensor, got "
                         f"{tuple(images.shape) if isinstance(images, torch.Tensor) else type(images)}")
    if not isinstance(cams, torch.Tensor) or cams.dim() != 3:
        raise ValueError("cams must be an (N, H, W) tensor, got "
                         f"{tuple(cams.shape) if isinstance(cams, torch.Tensor) else type(cams)}")
    n, _, height, width = images.shape
    if tuple(cams.shape) != (n, height, width):
        raise ValueError(f"cams shape {tuple(cams.shape)} does not match images "
                         f"{tuple(images.shape)}: expected {(n, height, width)}")
    if len(mean) != 3 or len(std) != 3:
        raise ValueError(f"mean and std need 3 values each, got {len(mean)} and {len(std)}")
    images = images.detach().float().cpu()
    mean = torch.tensor(mean, dtype=torch.float32)[:, None, None]             # (3, 1, 1)
    std = torch.tensor(std, dtype=torch.float32)[:, None, None]
    pictures = (images * std + mean).clamp(0, 1).permute(0, 2, 3, 1)         # (N, H, W, 3)
    return blend(pictures, cams, alpha)
