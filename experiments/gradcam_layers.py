"""Grad-CAM of the same images at several layers, side by side: which layer shows the object?

    python -m experiments.gradcam_layers out/model.pt --data-dir ./data --out docs/gradcam_layers.png

Takes --n consecutive images of the data folder's test_batch from --start (no choosing), classifies them with
the model (as predict.py does) and draws, for the predicted class, Grad-CAM at each --layers entry:
one row per layer, one column per image. docs/predict.md shows the result this repository's default
(train.py's gradcam_layer) was chosen from.
"""
import argparse
import sys

import data as cifar
import gradcam
import plots
import predict
import utils


def model_data_and_layers(args):
    """The --layers checked, the --model and the data folder's images, or one line and exit 2."""
    try:
        layers = [predict.check_layer(name) for name in args.layers.split(",")]
        return layers, predict.load_model(args.model), cifar.load_cifar10(args.data_dir, download=False)
    except utils.UsageError as e:
        sys.exit(f"error: {e}")


def main():
    p = argparse.ArgumentParser(prog="python -m experiments.gradcam_layers", description=__doc__.split("\n\n")[0])
    p.add_argument("model", help="a model.pt written by train.py")
    p.add_argument("--data-dir", default="./data", help="folder with cifar-10-batches-py")
    p.add_argument("--n", type=int, default=8, help="how many images")
    p.add_argument("--start", type=int, default=0, help="index of the first image in the test_batch")
    p.add_argument("--layers", default="layer3,layer2,layer1", help="comma-separated layer names")
    p.add_argument("--title", default=None, help="what the images are, for the title "
                   "(default: 'test images', or 'validation images' on a validation split)")
    p.add_argument("--out", default="gradcam_layers.png")
    a = p.parse_args()
    layers, model, d = model_data_and_layers(a)
    images, labels = d.test_images[a.start:a.start + a.n], d.test_labels[a.start:a.start + a.n]
    preds = predict.predict(model, images, precision="fp32")
    classes = [cifar.CLASSES.index(q.top[0][0]) for q in preds]
    pictures = plots.images_hwc(images)                                     # (n, 32, 32, 3)
    rows = []                                               # (layer, overlays (n, 32, 32, 3), map size)
    for name in layers:
        cams, size = predict.gradcam_maps(model, images, classes, name)
        rows.append((name, gradcam.blend(pictures, cams, 0.5).numpy(), size))

    fig = plots.new_figure((1.45 * a.n + 0.6, 1.55 * (1 + len(rows)) + 0.7))
    axes = fig.subplots(1 + len(rows), a.n, squeeze=False)
    for j in range(a.n):
        true, pred = cifar.CLASSES[int(labels[j])], cifar.CLASSES[classes[j]]
        axes[0, j].imshow(pictures[j], interpolation="nearest")
        axes[0, j].set_title(f"true: {true}\npred: {pred}" + ("" if true == pred else " (wrong)"),
                             fontsize=8)
        for i, (name, overlays, size) in enumerate(rows, start=1):
            axes[i, j].imshow(overlays[j], interpolation="nearest")
    for i, (name, overlays, size) in enumerate(rows, start=1):
        axes[i, 0].set_ylabel(f"{name}\n{size[0]}x{size[1]} map", fontsize=9)
    axes[0, 0].set_ylabel("image", fontsize=9)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    what = a.title or f"{d.eval_split} images"
    fig.suptitle(f"Grad-CAM for the predicted class at {', '.join(layers)}: {what}", fontsize=10)
    plots.save_figure(fig, a.out)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
