"""The web app of a trained custom ResNet: classify a picture, see why (Grad-CAM), see its mistakes.

    python app.py                  # in a Space folder made by `python -m app.export RUN SPACE`:
                                   # serves http://127.0.0.1:7860 (GRADIO_SERVER_PORT=8000 for another port)

The course's controls, one by one (docs/web-app.md has the table): an upload or one of 10 example
images (one per class); the top k classes, k from 1 to 10; Grad-CAM on or off, how many of the top
classes it explains, from which layer (those whose map is at least 5x5 first, each named with its
map size) and with what opacity; the run's misclassified images on or off and how many, each with
its true and predicted class and its Grad-CAM. A model trained on synthetic data says so on the
page and in one warning line at start-up.

Its API, as gradio_client sees it, has one endpoint per action, named as the page names it:
/classify(image, top_k, show_gradcam, gradcam_count, layer, opacity) and
/misclassified(show_misclassified, count, show_gradcam, layer, opacity) (docs/web-app.md).

Inference only: it imports predict.py, gradcam.py and custom_resnet.py (and what they import), never
the training code, downloads nothing and runs on a CPU. The functions below work without Gradio,
which is imported by `build` alone, so they are tested directly.
"""
import json
import os
import sys

import torch

import gradcam
import predict
import weights
from custom_resnet import CLASSES
from utils import UsageError

HERE = os.path.dirname(os.path.abspath(__file__))
STAGES = ("prep", "layer1", "layer2", "layer3")      # the network's parts offered for Grad-CAM
GALLERY = ("images", "labels", "predicted", "confidence")    # gallery.pt's fields (and "classes")
SHOWN = 160                                          # pixels a side of a picture on the page (32 upsampled)


# ----------------------------------------------------------------------------------------------
# What the Space holds

class Space:
    """The model and the pictures of a Space folder: model.pt, space.json (what the run measured),
    examples/ (one image per class) and gallery.pt (the run's misclassified held-out images), each
    read verified: UsageError naming the file that is missing or wrong."""

    def __init__(self, folder=HERE):
        self.folder = folder
        again = "export the Space again: python -m app.export RUN SPACE"
        self.model = predict.load_model(os.path.join(folder, "model.pt"))        # weights_only, verified
        self.about = read_about(os.path.join(folder, "space.json"), again)
        # What the weights were trained on: model.pt's own provenance; for a model.pt written
        # before train.py recorded it, the source the export took from the run's verified record.
        source = (self.model.provenance or {}).get("source") or self.about.get("source")
        self.warning = ("this model was trained on synthetic data: its answers say nothing about real images"
                        if source == "synthetic" else "")
        examples = os.path.join(folder, "examples")
        if not os.path.isdir(examples):
            raise UsageError(f"{examples}: no such folder (the 10 example images); {again}")
        self.examples = sorted(os.path.join(examples, f) for f in os.listdir(examples) if f.endswith(".png"))
        gallery = weights.read_images(os.path.join(folder, "gallery.pt"), {"": GALLERY}, again)
        self.gallery_images, self.gallery_labels = gallery["images"], gallery["labels"]
        self.gallery_predicted, self.gallery_confidence = gallery["predicted"], gallery["confidence"]


def read_about(path, advice) -> dict:
    """space.json: what the page says of the run, its accuracy a percentage and its data named;
    UsageError naming the field otherwise."""
    try:
        with open(path) as f:
            about = json.load(f)
    except (OSError, ValueError) as e:
        raise UsageError(f"{path}: not a readable space.json ({e.strerror if isinstance(e, OSError) else e}); "
                         f"{advice}") from None
    if not isinstance(about, dict):
        raise UsageError(f"{path}: a JSON {type(about).__name__}, not the object the export writes; {advice}")
    accuracy = about.get("accuracy")
    if not (weights.is_number(accuracy) and 0 <= accuracy <= 100):
        raise UsageError(f"{path}: its 'accuracy' is not a percentage from 0 to 100; {advice}")
    if not isinstance(about.get("data"), str):
        raise UsageError(f"{path}: its 'data' (what the accuracy was measured on) is not a text; {advice}")
    return about


def layer_choices() -> list:
    """(label, name) of the layers Grad-CAM is offered at: those whose map is at least 5x5 first,
    coarse to fine, then the smaller ones, each named with its map size."""
    sizes, least = predict.gradcam_layers(), predict.MIN_MAP_SIZE

    def label(n):
        (h, w), small = sizes[n], min(sizes[n]) < least
        return f"{n} ({h}x{w}" + (f", under {least}x{least})" if small else ")")
    stages = sorted(STAGES, key=lambda n: (min(sizes[n]) < least, min(sizes[n]) if min(sizes[n]) >= least else 0))
    return [(label(n), n) for n in stages]


def _whole(value, low, high) -> bool:
    """Whether value is a whole number in low..high (True, NaN and "3" are not)."""
    return weights.is_number(value) and int(value) == value and low <= value <= high


def _check(top_k, opacity, layer):
    if not _whole(top_k, 1, 10):
        raise UsageError(f"the number of top classes must be a whole number from 1 to 10, got {top_k!r}")
    if not weights.is_number(opacity) or not 0 <= opacity <= 1:
        raise UsageError(f"the opacity must lie between 0 and 1, got {opacity!r}")
    if layer not in STAGES:
        raise UsageError(f"Grad-CAM is offered at {', '.join(STAGES)}, not at {layer!r}")


def _picture(image_uint8, cam=None, opacity=0.5):
    """uint8 (3, 32, 32) [and its map (32, 32)] -> uint8 (SHOWN, SHOWN, 3): the image, the map laid
    over it with `opacity`, enlarged without smoothing so that the pixels the model saw stay visible."""
    picture = image_uint8.permute(1, 2, 0).float() / 255                        # (32, 32, 3)
    if cam is not None:
        picture = gradcam.blend(picture[None], cam[None], opacity)[0]
    big = picture.repeat_interleave(SHOWN // 32, 0).repeat_interleave(SHOWN // 32, 1)
    return (big * 255).round().to(torch.uint8).numpy()


def classify(space, image, top_k=3, show_cam=True, cams=1, layer="layer2", opacity=0.5):
    """The answer for one picture: ({class: probability} of the top_k classes, [(picture, caption)]:
    the 32x32 image the model saw beside its Grad-CAM for each of the first `cams` of the top
    classes shown (at most top_k of them), or [] with show_cam off).

    image: anything predict.load_images takes (a Pillow image, a file path, a uint8 array in a
    tensor); None, or a file that is no image, is a UsageError that says what to give."""
    _check(top_k, opacity, layer)
    if image is None:
        raise UsageError("no image: upload one (PNG or JPEG, any size) or pick an example")
    if isinstance(image, (list, tuple)):
        raise UsageError("one image at a time: upload one (PNG or JPEG, any size) or pick an example")
    if not _whole(cams, 1, 10):
        raise UsageError(f"the number of Grad-CAM images must be a whole number from 1 to 10, got {cams!r}")
    p, = predict.predict(space.model, [image], top=int(top_k), precision="fp32")
    top = dict(p.top)
    if not show_cam:
        return top, []
    order = p.probs.argsort(descending=True)[:min(int(cams), int(top_k))]      # of the classes shown
    maps, (h, w) = predict.gradcam_maps(space.model, p.image[None].expand(len(order), -1, -1, -1), order, layer)
    # A map that is zero everywhere would be a panel of one colour without a word: say so.
    return top, [(_pair(p.image, m, opacity), f"Grad-CAM: {CLASSES[c]} ({100 * float(p.probs[c]):.1f}%), "
                  + ("no evidence at " if predict.no_evidence(m) else "") + f"{layer} {h}x{w}")
                 for c, m in zip(order.tolist(), maps)]


def _pair(image_uint8, cam, opacity):
    """The image and its Grad-CAM side by side: uint8 (SHOWN, 2 SHOWN, 3)."""
    return torch.cat([torch.from_numpy(_picture(image_uint8)), torch.from_numpy(_picture(image_uint8, cam, opacity))],
                     dim=1).numpy()


def misclassified(space, show=True, count=10, show_cam=True, layer="layer2", opacity=0.5):
    """[(picture, caption)] of the run's first `count` misclassified images (most confident first),
    each captioned with its true and predicted class, and with its Grad-CAM for the predicted class
    beside it when show_cam is on; [] when show is off."""
    _check(1, opacity, layer)
    available = len(space.gallery_labels)
    if not _whole(count, 0, available):
        raise UsageError(f"the number of misclassified images must be a whole number from 0 to {available}, got {count!r}")
    if not show or not count:
        return []
    n = int(count)
    images, preds = space.gallery_images[:n], space.gallery_predicted[:n]
    maps = predict.gradcam_maps(space.model, images, preds, layer)[0] if show_cam else [None] * n
    out = []
    for i in range(n):
        picture = _pair(images[i], maps[i], opacity) if show_cam else _picture(images[i])
        out.append((picture, f"true: {CLASSES[int(space.gallery_labels[i])]}, predicted: "
                             f"{CLASSES[int(preds[i])]} ({100 * float(space.gallery_confidence[i]):.0f}%)"
                    + (", no evidence" if show_cam and predict.no_evidence(maps[i]) else "")))
    return out


# ----------------------------------------------------------------------------------------------
# The page

def about_text(space) -> str:
    a = space.about
    return ("### CIFAR-10 custom ResNet: what does it see?\n\n"
            + (f"**Warning: {space.warning}.**\n\n" if space.warning else "") +
            f"This model reached **{a['accuracy']:.2f}%** on {a['data']}. It knows only CIFAR-10's 10 classes "
            f"({', '.join(CLASSES)}) at 32x32 pixels: a photo is cut to its central square and shrunk to 32x32 "
            f"before it is classified, so expect it to be wrong on most pictures of anything else. "
            f"Grad-CAM shows where the model looked: red raised the class's score most.")


def build(space):
    """The Gradio page (imported here: the functions above need no Gradio)."""
    import gradio as gr
    layers = layer_choices()
    with gr.Blocks(title="CIFAR-10 custom ResNet", analytics_enabled=False) as page:
        gr.Markdown(about_text(space))
        with gr.Row():
            with gr.Column():
                # The file as uploaded (no mode forced by Gradio): read as predict.py reads a file, so a
                # float TIFF of NaN is refused, transparency laid on white, a PNG cut short refused.
                image = gr.Image(type="filepath", image_mode=None, label="Upload an image", elem_id="upload",
                                 sources=["upload"])
                gr.Examples(examples=space.examples, inputs=image, label="Or pick one of 10 examples (one per class)")
                top_k = gr.Slider(1, 10, value=3, step=1, label="How many top classes (1 to 10)", elem_id="top-k")
                show_cam = gr.Checkbox(value=True, label="Show Grad-CAM", elem_id="show-cam")
                cams = gr.Slider(1, 10, value=1, step=1, label="How many Grad-CAM images (of the top classes)",
                                 elem_id="cams")
                layer = gr.Dropdown(layers, value="layer2", label="Grad-CAM from which layer", elem_id="layer")
                opacity = gr.Slider(0, 1, value=0.5, step=0.05, label="Grad-CAM opacity", elem_id="opacity")
                run = gr.Button("Classify", variant="primary", elem_id="classify")
            with gr.Column():
                top = gr.Label(num_top_classes=10, label="Top classes", elem_id="top-classes")
                explained = gr.Gallery(label="Grad-CAM: the 32x32 image the model sees, and where it looked",
                                       columns=2, height=420, object_fit="contain", elem_id="gradcam")
        kept = len(space.gallery_labels)          # a run that made no mistake has nothing to show here
        with gr.Row(visible=kept > 0):
            with gr.Column():
                show_wrong = gr.Checkbox(value=False, label="Show the run's misclassified images", elem_id="show-wrong")
                count = gr.Slider(0, max(1, kept), value=min(10, kept), step=1, label="How many misclassified images",
                                  elem_id="count")
        wrong = gr.Gallery(label="Misclassified held-out images: the image and its Grad-CAM for the predicted class",
                           columns=5, height=520, object_fit="contain", elem_id="misclassified")

        # The API a client scripts against (gradio_client, the page's "Use via API"): one endpoint
        # per action, its parameters named after the controls (Gradio reads the functions' names).
        def classify_image(image, top_k, show_gradcam, gradcam_count, layer, opacity):
            try:
                return classify(space, image, top_k, show_gradcam, gradcam_count, layer, opacity)
            except UsageError as e:
                raise gr.Error(str(e)) from None

        def show_misclassified_images(show_misclassified, count, show_gradcam, layer, opacity):
            try:
                return misclassified(space, show_misclassified, count, show_gradcam, layer, opacity)
            except UsageError as e:
                raise gr.Error(str(e)) from None
        run.click(classify_image, [image, top_k, show_cam, cams, layer, opacity], [top, explained],
                  api_name="classify")
        # Any of its five controls redraws the gallery: one event, so one endpoint, not five copies.
        gr.on([c.change for c in (show_wrong, count, show_cam, layer, opacity)], show_misclassified_images,
              [show_wrong, count, show_cam, layer, opacity], wrong, api_name="misclassified")
    return page


# The gallery's captions wrap instead of being cut ("predicted: automo..."): Gradio draws them on
# one line, at most 80% of the picture's width.
CSS = "#gradcam .caption-label, #misclassified .caption-label { white-space: normal; max-width: 100%; }"


def server_port() -> int:
    """The port from GRADIO_SERVER_PORT (Gradio's own variable, which its errors name), 7860 by
    default; UsageError for one that is not a port."""
    given = os.environ.get("GRADIO_SERVER_PORT", "7860")
    if not (given.strip().isdigit() and 1 <= int(given) <= 65535):
        raise UsageError(f"GRADIO_SERVER_PORT={given!r} is not a port: give a number from 1 to 65535 (7860 by default)")
    return int(given)


def main() -> int:
    """Serve the page: on 127.0.0.1 (this machine only) unless on Hugging Face Spaces, which sets
    SPACE_ID and needs 0.0.0.0, or GRADIO_SERVER_NAME says otherwise; the port from
    GRADIO_SERVER_PORT, 7860 by default (Gradio's own variables). A Space that cannot be read is
    one line (exit status 2); a model trained on synthetic data, one warning line."""
    try:
        space = Space()
        port = server_port()
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if space.warning:
        print(f"warning: {os.path.join(space.folder, 'model.pt')}: {space.warning}", file=sys.stderr)
    host = "0.0.0.0" if os.environ.get("SPACE_ID") else os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1")
    build(space).launch(server_name=host, server_port=port, ssr_mode=False, show_error=True, allowed_paths=[HERE],
                        css=CSS)
    return 0


if __name__ == "__main__":
    sys.exit(main())
