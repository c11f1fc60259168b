"""Classify your own images with a trained model, and see why: top-3 classes, Grad-CAM, flip TTA.

    python predict.py out/model.pt cat.jpg dog.png                  # top-3 classes per image
    python predict.py out/model.pt cat.jpg --explain out/explain    # + a Grad-CAM picture each
    python predict.py out/model.pt cat.jpg --explain out/explain --cam-class dog --layer layer3
    python predict.py out/model.pt --evaluate --data-dir ./data     # accuracy without/with flip TTA

    import predict
    model = predict.load_model("out/model.pt")          # any --width; read with weights_only=True
    for p in predict.predict(model, ["cat.jpg", "dog.png"]):
        print(p.name, p.top)                            # [("cat", 0.91), ("dog", 0.05), ...]

Images: anything Pillow opens (PNG, JPEG, ...), any size. RGBA is laid on white, as a viewer
shows it; greyscale is copied to the three channels; a photo's EXIF rotation is applied. The model
sees 32x32 pixels: a 32x32 image is used as it is; another is cut to its central square (as
torchvision's CenterCrop) and resized to 32x32 with Pillow's antialiased bilinear filter (as
torchvision's Resize). `--fit squash` resizes the whole image instead, distorting its shape.
Each printed line says what was done. Tensors work too: uint8 (N, 3, H, W) or (3, H, W) in
0..255, or float in [0, 1] (torchvision's ToTensor scale). An image that cannot be read is one
line on stderr and the others are classified; the exit status is then 1 (2 when none could be).

The first line says what the model was trained on, as train.py records it inside model.pt (its
provenance: the data, the held-out split and accuracy, the commit); a model trained on synthetic
data gets one warning line; a model.pt that does not record it says "provenance unknown".

The numbers are those of the training run: the same normalisation, batching, precision
(`--precision auto`, as train.py) and logits as train.py's evaluation (tests/test_predict.py
holds them equal). Inference only: this module imports the network, Grad-CAM and the checkpoint
reader, never the training code, so it can run where that code is not (the web app, app/).
"""
import argparse
import dataclasses
import difflib
import os
import sys
import zipfile

import torch

import gradcam
import plots
import utils
import weights
from custom_resnet import CLASSES, CustomResNet, normalize
from utils import UsageError

DEFAULT_LAYER = "layer2"        # Grad-CAM's layer (8x8 maps), as train.py's default
MIN_MAP_SIZE = 5                # the course's graders refuse Grad-CAM from a channel under 5x5 pixels
SOME_UNREAD = 1                 # the command line's exit status when some images could not be read (none: 2)

FITS = ("crop", "squash")
HOW_FITTED = {"crop": "central square resized to 32x32 (antialiased bilinear)",
              "squash": "whole image resized to 32x32 (antialiased bilinear; shape distorted)"}


# ==============================================================================================
# The weights

def load_model(path, width=None, device="cpu") -> CustomResNet:
    """CustomResNet with the weights of `path` (a model.pt of train.py), in eval mode.

    The width is read from the weights; `width`, when given, must match it. Read with
    torch.load(weights_only=True): tensors only, nothing in the file can run code.
    Raises UsageError saying what to give instead. model.provenance: what the weights were
    trained on, as train.py recorded it in the file (weights.provenance), or None for a model.pt
    that does not say (written before train.py recorded it, or by other code); then
    model.provenance_problem says why, when it is not simply absent.
    """
    path = os.fspath(path)
    use = "give the model.pt that train.py wrote (in its --out-dir, ./out by default)"
    state = weights.read_weights(path, use)
    prep = state.get("prep.conv.weight")
    if prep is None or prep.dim() != 4 or tuple(prep.shape[1:]) != (3, 3, 3):
        raise UsageError(f"{path}: not the weights of this repository's CustomResNet (no "
                         f"'prep.conv.weight' of shape (width, 3, 3, 3)); {use}")
    found = prep.shape[0]
    if width is not None and width != found:
        raise UsageError(f"{path}: these weights are of width {found}, not {width}: drop --width "
                         f"(it is read from the file) or give --width {found}")
    model = CustomResNet(num_classes=10, width=found)
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    misfit = [k for k in expected if k in state and state[k].shape != expected[k].shape]
    if missing or unexpected or misfit:
        what = (f"missing {missing[0]!r}" if missing else f"unexpected {unexpected[0]!r}" if unexpected
                else f"{misfit[0]!r} has shape {tuple(state[misfit[0]].shape)}, CustomResNet(width="
                     f"{found}) has {tuple(expected[misfit[0]].shape)}")
        n = len(missing) + len(unexpected) + len(misfit)
        raise UsageError(f"{path}: not the weights of CustomResNet(width={found}) ({what}; {n} "
                         f"mismatch{'es' if n > 1 else ''} in all); {use}")
    model.load_state_dict(state)
    found, problem = weights.provenance(state)
    if found is not None and found["width"] != width_found(state):
        found, problem = None, f"its provenance says width {found['width']}, the weights are of width {width_found(state)}"
    # What the weights were trained on (None: not recorded), read by the command line and the app.
    model.provenance, model.provenance_problem = found, problem
    # channels_last, as train.py runs it: the same convolution kernels, the same numbers.
    return model.to(device, memory_format=torch.channels_last).eval()


def width_found(state) -> int:
    return state["prep.conv.weight"].shape[0]


# ==============================================================================================
# The images: whatever the user has -> uint8 (3, 32, 32)

def read_image(path):
    """The image in file `path` as a Pillow image, EXIF rotation applied; UsageError if it is
    missing, unreadable or not an image."""
    from PIL import Image, ImageOps, UnidentifiedImageError
    path = os.fspath(path)
    if not os.path.exists(path):
        raise UsageError(f"{path}: no such file")
    if os.path.isdir(path):
        raise UsageError(f"{path} is a folder; give image files (for example {os.path.join(path, '*.jpg')})")
    try:
        with Image.open(path) as im:
            im.load()                                  # decode now: a truncated file fails here
            if im.format == "PNG" and not png_rows_complete(path):
                raise UsageError(f"{path}: the PNG's pixel data stops early (Pillow would fill the missing rows "
                                 "with black); give the whole file")
            return ImageOps.exif_transpose(im)         # phone photos are often stored sideways
    except UsageError:
        raise
    except UnidentifiedImageError:
        raise UsageError(f"{path}: not an image file Pillow can read; give a PNG or a JPEG") from None
    except OSError as e:
        raise UsageError(f"{path}: cannot read the image ({e.strerror or utils.first_line(e)})") from None
    except Exception as e:                             # e.g. Pillow's DecompressionBombError
        raise UsageError(f"{path}: cannot read the image ({type(e).__name__}: {utils.first_line(e)})") from None


def png_rows_complete(path) -> bool:
    """Whether a PNG's compressed pixel data (its IDAT chunks) holds every row its header
    announces. Pillow decodes a PNG whose data ends early, but complete as a zlib stream, by
    filling the missing rows with zeros, without a word; this counts the bytes instead."""
    import struct
    import zlib
    with open(path, "rb") as f:
        blob = f.read()
    pos, idat, header = 8, [], None
    while pos + 8 <= len(blob):
        length, kind = struct.unpack(">I4s", blob[pos:pos + 8])
        body = blob[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body[:13])
        elif kind == b"IDAT":
            idat.append(body)
        pos += 12 + length
    if header is None:
        return False
    width, height, depth, colour, _, _, interlace = header
    bits = depth * {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}.get(colour, 4)                    # per pixel
    passes = ([(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]
              if interlace else [(0, 0, 1, 1)])                                        # Adam7, or one pass
    expected = 0
    for x0, y0, dx, dy in passes:
        w, h = -(-(width - x0) // dx), -(-(height - y0) // dy)
        if w > 0 and h > 0:
            expected += h * (1 + -(-w * bits // 8))                                     # a filter byte a row
    try:
        return len(zlib.decompress(b"".join(idat))) >= expected
    except zlib.error:
        return False


def to_rgb(im):
    """-> (RGB Pillow image, note). Transparency is laid on white, as image viewers show it;
    greyscale is copied to the three channels; 16-bit greyscale is scaled to 8 bits."""
    from PIL import Image
    mode = im.mode
    if mode == "RGB":
        return im, "RGB"
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in im.info:
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB"), f"{mode} on white"
    if mode in ("I", "I;16", "I;16B", "I;16L", "I;16N"):
        im = im.convert("I").point(lambda v: v / 257).convert("L")   # 0..65535 -> 0..255
    note = "greyscale -> RGB" if mode in ("1", "L", "I", "I;16", "I;16B", "I;16L", "I;16N") else f"{mode} -> RGB"
    return im.convert("RGB"), note


def fit_32(im, fit="crop"):
    """-> (32x32 Pillow image, note). See the module docstring; a 32x32 image is left alone."""
    from PIL import Image
    w, h = im.size
    if (w, h) == (32, 32):
        return im, "32x32"
    if fit == "crop":
        s = min(w, h)
        left, top = (w - s) // 2, (h - s) // 2
        box = (left, top, left + s, top + s)
        note = f"{w}x{h} -> 32x32" if w == h else f"{w}x{h} -> centre {s}x{s} -> 32x32"
    else:
        box, note = None, f"{w}x{h} -> 32x32 squashed"
    # Pillow's resize scales its filter with the reduction, i.e. it antialiases (as
    # torchvision's Resize(antialias=True)); without that, a 640-pixel photo would alias badly.
    return im.resize((32, 32), Image.Resampling.BILINEAR, box=box), note


def _image_to_uint8(im):
    """RGB Pillow image -> uint8 (3, H, W)."""
    import numpy as np
    return torch.from_numpy(np.array(im, dtype=np.uint8)).permute(2, 0, 1).contiguous()


def _tensor_to_pil(t, name):
    from PIL import Image
    if t.dim() != 3 or t.shape[0] not in (1, 3):
        raise UsageError(f"{name}: an image tensor must be (3, H, W) or (1, H, W), got {tuple(t.shape)}")
    t = t.detach().cpu()
    if t.is_floating_point():
        if not bool(torch.isfinite(t).all()):         # NaN passes any "between 0 and 1" test: ask first
            raise UsageError(f"{name}: a float image holds NaN or inf, which no pixel is; give values in [0, 1] "
                             "(ToTensor's scale)")
        if t.numel() and (t.min() < 0 or t.max() > 1):
            raise UsageError(f"{name}: a float image must hold values in [0, 1] (ToTensor's scale), "
                             f"got {t.min().item():.3g} .. {t.max().item():.3g}; pass raw images, "
                             "not normalised ones")
        t = (t * 255).round().to(torch.uint8)       # ToTensor's k/255 values come back exactly
    elif t.dtype != torch.uint8:
        raise UsageError(f"{name}: an image tensor must be uint8 (0..255) or float (0..1), got {t.dtype}")
    t = t.expand(3, -1, -1)
    return Image.fromarray(t.permute(1, 2, 0).contiguous().numpy(), "RGB")


def _sources(images):
    """A path, Pillow image, tensor (one image or a batch), or a list of them -> [(name, item)]."""
    from PIL import Image
    if isinstance(images, torch.Tensor):
        images = list(images) if images.dim() == 4 else [images]
    elif isinstance(images, (str, os.PathLike, Image.Image)):
        images = [images]
    out = []
    for i, item in enumerate(images):
        if isinstance(item, (str, os.PathLike)):
            out.append((os.fspath(item), item))
        elif isinstance(item, (torch.Tensor, Image.Image)):
            out.append((f"image {i}", item))
        else:
            raise UsageError(f"image {i}: expected a file path, a Pillow image or a tensor, got "
                             f"{type(item).__name__}")
    return out


def load_images(images, fit="crop", on_error=None):
    """-> (uint8 (N, 3, 32, 32), names, notes): every image read, converted and fitted, before
    anything is computed, so a bad one stops the whole call (and nothing is half done).

    on_error: None, or a function given the one-line message of each image that cannot be read
    (missing, not an image, ...), which is then left out and the others kept (the command line's
    batches); the result may then hold no image."""
    if fit not in FITS:
        raise UsageError(f"fit must be one of {', '.join(FITS)}, got {fit!r}")
    pictures, names, notes = [], [], []
    for name, item in _sources(images):
        try:
            picture, note = _load_one(name, item, fit)
        except UsageError as e:
            if on_error is None:
                raise
            on_error(str(e))
            continue
        pictures.append(picture)
        names.append(name)
        notes.append(note)
    if not pictures and on_error is None:
        raise UsageError("no images given")
    return (torch.stack(pictures) if pictures else torch.zeros(0, 3, 32, 32, dtype=torch.uint8)), names, notes


def _load_one(name, item, fit):
    """One image -> (uint8 (3, 32, 32), how it was fitted); UsageError if it cannot be read."""
    import numpy as np
    from PIL import Image
    if isinstance(item, (str, os.PathLike)):
        item = read_image(item)
    elif isinstance(item, torch.Tensor):
        item = _tensor_to_pil(item, name)
    elif not isinstance(item, Image.Image):
        raise UsageError(f"{name}: not an image")
    if item.mode == "F" and not np.isfinite(np.asarray(item)).all():    # a float TIFF, say
        raise UsageError(f"{name}: a float image holds NaN or inf, which no pixel is; give finite values")
    rgb, colour = to_rgb(item)
    small, size = fit_32(rgb, fit)
    return _image_to_uint8(small), f"{size}, {colour}"


# ==============================================================================================
# Predictions

@dataclasses.dataclass
class Prediction:
    name: str                  # the file, or "image i" for a tensor or Pillow image
    probs: torch.Tensor        # float32 (10,): softmax of the logits
    logits: torch.Tensor       # float32 (10,): what the model returned (mean of the two with TTA)
    top: list                  # [(class name, probability)], most likely first
    fitted: str                # how the image became 32x32 RGB
    image: torch.Tensor        # uint8 (3, 32, 32): what the model saw

    def __str__(self):
        classes = ", ".join(f"{c} {100 * p:.1f}%" for c, p in self.top)
        return f"{self.name}: {classes}   [{self.fitted}]"


def _runtime(model, precision):
    return utils.pick_runtime(str(next(model.parameters()).device), precision)


@torch.inference_mode()
def logits(model, images_uint8, rt, tta=False, batch_size=1000):
    """float32 logits (N, 10) of uint8 images (N, 3, 32, 32), computed as train.py's evaluation
    computes them: the same normalisation, batches of batch_size, autocast and forward passes.

    tta: flip test-time augmentation, the mean of the logits of each image and of its mirror
    image (airbench's TTA level 1). An image that is its own mirror image gets its plain logits."""
    model.eval()
    out = []
    for start in range(0, len(images_uint8), batch_size):
        x = normalize(images_uint8[start:start + batch_size].to(rt.device))       # (B, 3, 32, 32)
        with rt.autocast():
            batch = model(x).float()
            if tta:
                batch = (batch + model(x.flip(-1)).float()) / 2
        out.append(batch)
    return torch.cat(out).cpu()


def predict(model, images, *, tta=False, fit="crop", top=3, precision="auto", batch_size=1000,
            on_error=None) -> list:
    """Classify images: a list of Prediction, one per image, in order.

    images: a file path, a Pillow image, a tensor (see the module docstring) or a list of them.
    tta: average the logits of each image and its mirror image (see logits).
    precision: as train.py's --precision; auto = the training run's default, so the numbers equal
    its evaluation's. Runs on the model's device.
    on_error: None (an image that cannot be read is a UsageError), or a function given the
    message of each such image, which is left out of the list (see load_images).
    """
    if not 1 <= top <= 10:
        raise UsageError(f"top must be between 1 and 10, got {top}")
    pictures, names, notes = load_images(images, fit, on_error)
    if not names:
        return []
    out = logits(model, pictures, _runtime(model, precision), tta, batch_size)    # (N, 10)
    broken = [names[i] for i in range(len(names)) if not torch.isfinite(out[i]).all()]
    if broken:
        raise UsageError(f"the model's scores for {broken[0]} are not finite (NaN or inf): its weights are broken; "
                         "use the model.pt of a run that finished")
    probs = out.softmax(-1)
    result = []
    for i in range(len(names)):
        p, k = probs[i].topk(top)
        result.append(Prediction(names[i], probs[i], out[i],
                                 [(CLASSES[j], float(q)) for q, j in zip(p.tolist(), k.tolist())],
                                 notes[i], pictures[i]))
    return result


# ==============================================================================================
# Grad-CAM, at the layer the user picks

def gradcam_layers() -> dict:
    """{name: (h, w)}: where Grad-CAM can be taken in CustomResNet for a 32x32 image, and the size
    of its map there (prep 32x32, layer1 16x16, layer2 8x8, layer3 4x4, and the parts inside)."""
    return gradcam.map_sizes(CustomResNet(width=1), torch.zeros(1, 3, 32, 32))


def check_layer(layer):
    layers = gradcam_layers()
    if layer not in layers:
        raise UsageError(gradcam.unknown_layer(layer, layers))
    return layer


def class_index(name_or_index) -> int:
    """'cat', 'Cat', 3 or '3' -> 3; UsageError listing the classes otherwise."""
    s = str(name_or_index).strip().lower()
    if s.isdigit() and int(s) < len(CLASSES):
        return int(s)
    if s in CLASSES:
        return CLASSES.index(s)
    near = difflib.get_close_matches(s, CLASSES, 1)
    hint = f" (did you mean {near[0]!r}?)" if near else ""
    raise UsageError(f"unknown class {name_or_index!r}{hint}; the classes are "
                     + ", ".join(f"{i} {c}" for i, c in enumerate(CLASSES)))


def gradcam_maps(model, images_uint8, targets, layer=DEFAULT_LAYER):
    """Grad-CAM maps (N, 32, 32) in [0, 1] for classes `targets` (N,), at `layer`, and the size
    (h, w) of that layer's map. The images are normalised as training normalises them."""
    check_layer(layer)
    device = next(model.parameters()).device
    with gradcam.GradCAM(model, layer) as cam:
        maps = cam(normalize(images_uint8.to(device)), torch.as_tensor(targets))
        size = tuple(cam.activations.shape[-2:])
    return maps.cpu(), size


def no_evidence(cam) -> bool:
    """Whether a Grad-CAM map (h, w) is zero everywhere: no part of the image raised the class's
    score at that layer (the ReLU of Grad-CAM kept nothing), so there is nothing to show."""
    return not bool((cam > 0).any())


def plot_explanation(pred: Prediction, cams, classes, roles, layer, path=None, alpha=0.5):
    """One picture: the 32x32 image the model saw, then Grad-CAM over it for each class of
    `classes` (indices; cams: (len(classes), 32, 32); roles: a word for each, "predicted", ...).
    Saved atomically when path is given."""
    import matplotlib
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    picture = plots.images_hwc(pred.image[None])[0]                          # (32, 32, 3)
    fig = plots.new_figure((2.3 * (1 + len(classes)) + 1.0, 3.0))
    axes = fig.subplots(1, 1 + len(classes))
    cells = [(picture, "what the model sees\n(32x32)")]
    for c, cam, role in zip(classes, cams, roles):
        caption = f"Grad-CAM: {CLASSES[c]}\n({role}, {100 * float(pred.probs[c]):.1f}%)"
        if no_evidence(cam):             # drawn, it is the colour of 0 everywhere: a panel without a word
            caption += "\nno evidence at this layer"
        cells.append((gradcam.blend(picture[None], cam.clamp(0, 1)[None], alpha)[0].numpy(), caption))
    for ax, (img, caption) in zip(axes, cells):
        ax.imshow(img, interpolation="nearest")
        ax.set_title(caption, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    colours = ScalarMappable(norm=Normalize(0, 1), cmap=matplotlib.colormaps["jet"])
    fig.colorbar(colours, ax=axes, shrink=0.8, pad=0.03).set_label("Grad-CAM", fontsize=9)
    fig.suptitle(f"{os.path.basename(pred.name)}  [{pred.fitted}]\nGrad-CAM at {layer}; red = "
                 "what raised that class's score most", fontsize=10)
    return plots.save_figure(fig, path)


def _writable(folder):
    try:
        utils.ensure_writable_dir(folder)
    except UsageError:
        raise UsageError(f"--explain {folder}: cannot create or write to that folder; choose another") from None


@dataclasses.dataclass
class Explanation:
    classes: list              # the class indices explained: [predicted, runner-up or asked for]
    roles: list                # a word for each: "predicted", "runner-up" / "asked for"
    maps: torch.Tensor         # float32 (2, 32, 32) in [0, 1]: Grad-CAM of each class
    layer: str                 # where the maps were taken
    map_size: tuple            # (h, w) of the layer's map, before upsampling


def explanations(model, predictions, cam_class=None, layer=DEFAULT_LAYER) -> list:
    """Grad-CAM of each prediction for its predicted class and for `cam_class` (a name or index;
    None = each image's runner-up, its second most likely class), on the 32x32 image the model
    saw, normalised as training normalises it. A list of Explanation, one per prediction."""
    check_layer(layer)
    other = None if cam_class is None else class_index(cam_class)
    images = torch.stack([p.image for p in predictions])
    first = [CLASSES.index(p.top[0][0]) for p in predictions]
    second = [other if other is not None else int(p.probs.topk(2).indices[1]) for p in predictions]
    cams_first, size = gradcam_maps(model, images, first, layer)
    cams_second, _ = gradcam_maps(model, images, second, layer)
    roles = ["predicted", "runner-up" if other is None else "asked for"]
    return [Explanation([a, b], roles, torch.stack([ca, cb]), layer, size)
            for a, b, ca, cb in zip(first, second, cams_first, cams_second)]


def explain(model, predictions, out_dir, cam_class=None, layer=DEFAULT_LAYER) -> list:
    """Save one Grad-CAM picture per prediction in out_dir: the image, the map for the predicted
    class and the map for `cam_class` (see explanations). Returns the paths written,
    `<out_dir>/<file name>.gradcam.png`."""
    check_layer(layer)
    if cam_class is not None:
        class_index(cam_class)
    _writable(out_dir)
    paths, used = [], set()
    for i, (p, e) in enumerate(zip(predictions, explanations(model, predictions, cam_class, layer))):
        stem = os.path.basename(p.name).replace(" ", "_") or f"image_{i}"
        name, n = f"{stem}.gradcam.png", 2
        while name in used:                             # two inputs with the same file name
            name, n = f"{stem}-{n}.gradcam.png", n + 1
        used.add(name)
        path = os.path.join(out_dir, name)
        try:
            plot_explanation(p, e.maps, e.classes, e.roles, f"{layer} ({e.map_size[0]}x{e.map_size[1]} map)", path)
        except OSError as err:                         # a full disk: each picture is whole or absent
            raise utils.WriteFailed(f"could not write {path} ({err.strerror or utils.first_line(err)}); the "
                                    f"{len(paths)} picture(s) before it are whole. Free some space and run again") \
                from None
        paths.append(path)
    return paths


# ==============================================================================================
# Accuracy with and without flip TTA, on a data folder's test_batch

def evaluate_tta(model, data_dir="./data", download=True, precision="auto", batch_size=1000) -> dict:
    """The accuracy and loss on the test_batch of data_dir, without and with flip TTA, from the
    logits a training run's evaluation computes (see logits). Returns {"plain": {...}, "tta": {...},
    "n": images, "split": "test" or "validation" (data.Cifar10.eval_split), "gain_points": tta
    accuracy - plain accuracy}."""
    import data        # here: only --evaluate reads a data folder (and may download CIFAR-10)
    d = data.load_cifar10(data_dir, download=download)
    rt = _runtime(model, precision)
    result = {"n": len(d.test_labels), "split": d.eval_split, "device": str(rt.device), "precision": rt.precision}
    for key, tta in (("plain", False), ("tta", True)):
        out = logits(model, d.test_images, rt, tta, batch_size)                      # (N, 10)
        correct = int((out.argmax(1) == d.test_labels).sum())
        loss = torch.nn.functional.cross_entropy(out, d.test_labels).item()
        result[key] = {"accuracy": 100 * correct / len(out), "correct": correct, "loss": loss}
    result["gain_points"] = result["tta"]["accuracy"] - result["plain"]["accuracy"]
    return result


# ==============================================================================================
# Command line

class _Parser(argparse.ArgumentParser):
    def error(self, message):            # one line, not the whole usage block
        self.exit(2, f"error: {message}. See: python predict.py --help\n")


def parse_args(argv):
    p = _Parser(prog="predict.py", description=__doc__.split("\n\n")[0],
                epilog="examples:\n" + "\n".join(line for line in __doc__.split("\n\n")[1].splitlines()),
                formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False)
    p.add_argument("model", help="the model.pt that train.py wrote (its width is read from it)")
    p.add_argument("images", nargs="*", help="image files (PNG, JPEG, ...; any size)")
    p.add_argument("--tta", action=argparse.BooleanOptionalAction, default=False,
                   help="flip test-time augmentation: the mean of the logits of each image and its "
                        "mirror image (default: off, as the recipe)")
    p.add_argument("--fit", choices=FITS, default="crop",
                   help="how an image of another size becomes 32x32: crop = its central square, "
                        "resized (default); squash = the whole image, resized")
    p.add_argument("--top", type=int, default=3, help="classes printed per image (default: 3)")
    p.add_argument("--explain", metavar="DIR", default=None,
                   help="save a Grad-CAM picture per image in DIR: the image, the map for the "
                        "predicted class and for --cam-class")
    p.add_argument("--cam-class", default=None, metavar="CLASS",
                   help="the class of the last map, a name or 0-9 (default: each image's runner-up)")
    p.add_argument("--layer", default=DEFAULT_LAYER,
                   help="the part Grad-CAM is taken at: prep (32x32 map), layer1 (16x16), layer2 "
                        "(8x8), layer3 (4x4), or a part inside them such as layer1.res "
                        f"(default: {DEFAULT_LAYER})")
    p.add_argument("--width", type=int, default=None,
                   help="check that the weights are of this width (default: read from the file)")
    p.add_argument("--evaluate", action="store_true",
                   help="instead of images: print the accuracy on the test_batch of --data-dir "
                        "without and with flip TTA")
    p.add_argument("--data-dir", default="./data", help="with --evaluate: folder with cifar-10-batches-py")
    p.add_argument("--download", action=argparse.BooleanOptionalAction, default=True,
                   help="with --evaluate: download CIFAR-10 when it is missing (default: on)")
    p.add_argument("--batch-size", type=int, default=1000, help="images per forward pass (default: 1000)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N | mps (default: auto)")
    p.add_argument("--precision", default="auto",
                   help="auto | fp32 | bf16 | fp16 (default: auto, as train.py)")
    return p.parse_args(argv)


def run(args, log=print):
    """The command line's work; everything is checked before anything is computed or written."""
    swapped = swapped_arguments(args.model, args.images)
    if swapped:
        raise UsageError(swapped)
    if args.evaluate and args.images:
        raise UsageError("give image files or --evaluate, not both")
    if not args.evaluate and not args.images:
        raise UsageError("no images given: python predict.py MODEL IMAGE [IMAGE ...] (or --evaluate)")
    if args.batch_size < 1:
        raise UsageError(f"--batch-size must be at least 1, got {args.batch_size}")
    check_layer(args.layer)
    if args.cam_class is not None:
        class_index(args.cam_class)
        if args.explain is None:
            raise UsageError("--cam-class names the class of a Grad-CAM map: add --explain DIR")
    rt = utils.pick_runtime(args.device, args.precision)
    model = load_model(args.model, args.width, rt.device)
    width = model.prep.conv.out_channels
    warning = weights.synthetic_warning(args.model, model.provenance)
    if warning:
        print(warning, file=sys.stderr)
    trained = weights.describe_provenance(model.provenance, model.provenance_problem)
    if args.evaluate:
        r = evaluate_tta(model, args.data_dir, args.download, rt.precision, args.batch_size)
        log(f"{args.model} (width {width}; {trained}) on the {r['n']:,} {r['split']} images of {args.data_dir}'s "
            "test_batch, "
            f"{r['device']} {r['precision']}:")
        for key, label in (("plain", "without TTA:  "), ("tta", "with flip TTA:")):
            e = r[key]
            log(f"  {label} accuracy {e['accuracy']:.2f}% ({e['correct']}/{r['n']}), loss {e['loss']:.4f}")
        log(f"  flip TTA gain: {r['gain_points']:+.2f} points")
        return r
    # An image that cannot be read is one line and left out; the others are classified (and
    # cli's exit status says that some were not).
    unread = []

    def left_out(message):
        unread.append(message)
        print(f"error: {message}", file=sys.stderr)
    preds = predict(model, args.images, tta=args.tta, fit=args.fit, top=args.top,
                    precision=rt.precision, batch_size=args.batch_size, on_error=left_out)
    args.unread = len(unread)
    if not preds:                                      # each said in its line: nothing else to do
        return preds
    if args.explain is not None:
        _writable(args.explain)                        # before anything is printed or drawn
    log(f"{args.model} (width {width}; {trained}), {rt.device} {rt.precision}, flip TTA "
        f"{'on' if args.tta else 'off'}; each image: {HOW_FITTED[args.fit]}")
    for p in preds:
        log(str(p))
    if args.explain is not None:
        paths = explain(model, preds, args.explain, args.cam_class, args.layer)
        log(f"Grad-CAM at {args.layer}: {len(paths)} picture(s) in {args.explain}")
    return preds


IMAGE_ENDINGS = (".png", ".jpg", ".jpeg", ".gif", ".bmp", ".tif", ".tiff", ".webp")


def _is_image(path) -> bool:
    """Whether path is an image file (Pillow reads its header) rather than a torch file."""
    from PIL import Image, UnidentifiedImageError
    if not os.path.isfile(path) or zipfile.is_zipfile(path):         # torch.save writes a zip archive
        return False
    try:
        with Image.open(path):
            return True
    except (UnidentifiedImageError, OSError, ValueError):
        return False


def swapped_arguments(model, images) -> str:
    """A message when the model's place holds an image ("" otherwise): the arguments are swapped
    when one of the images is the torch file; torch's own error would be about unpickling."""
    if not _is_image(model):
        return ""
    torch_files = [i for i in images if os.path.isfile(i) and zipfile.is_zipfile(i)
                   or not os.path.exists(i) and i.lower().endswith(".pt")]
    if torch_files:
        rest = [i for i in images if i != torch_files[0]]
        return (f"the arguments are swapped: {model} is an image and {torch_files[0]} the model; the model comes first: "
                f"python predict.py {' '.join([torch_files[0], model, *rest])}")
    return f"{model} is an image, not a model; the model comes first: python predict.py MODEL {' '.join([model, *images])}"


def cli(argv=None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        done = run(args)
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code                             # 2; 4 for a write that failed
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    if getattr(args, "unread", 0):                     # each image that could not be read had its line
        return SOME_UNREAD if done else UsageError.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(cli())
