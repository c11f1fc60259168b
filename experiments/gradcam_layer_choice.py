"""How faithful and how class-specific Grad-CAM is at each layer: the measurements behind the default layer.

    python -m experiments.gradcam_layer_choice out/model.pt --data-dir DIR --out experiments/measurements/x.json

For the first --n images of the data folder's test_batch (no choosing) and each of --layers:
  * average drop (Chattopadhay et al., "Grad-CAM++", arXiv 1710.11063, section 6.1): the model's
    probability of the explained class on the image multiplied by its map, against the whole
    image, max(0, p - p_masked) / p in percent, averaged; lower is better: the map keeps what the
    class needs. "increase" is the share of images whose probability rises on the masked image.
  * class overlap: the Pearson correlation between the maps of the two most likely classes, averaged;
    lower means the map is about the class asked for, not about where anything is.
The explained class is the predicted one. A layer whose map is under 5x5 pixels is measured too, and
marked: the course's graders refuse such maps.
"""
import argparse
import sys
import time

import torch

import predict
import utils
from custom_resnet import CIFAR10_MEAN, CIFAR10_STD
from experiments.gradcam_layers import model_data_and_layers


def probabilities(model, images_float, classes, batch=250):
    """Softmax probability of `classes` (N,) for float images in 0..255 (N, 3, 32, 32), normalised
    as training normalises uint8 images."""
    mean = torch.tensor(CIFAR10_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CIFAR10_STD).view(1, 3, 1, 1)
    out = []
    with torch.no_grad():
        for i in range(0, len(images_float), batch):
            x = ((images_float[i:i + batch] / 255 - mean) / std).contiguous(memory_format=torch.channels_last)
            out.append(model(x).float().softmax(-1).gather(1, classes[i:i + batch, None])[:, 0])
    return torch.cat(out)


def pearson(a, b):
    """Row-wise correlation of (N, P) a and b; 0 where a row is constant."""
    a, b = a - a.mean(1, keepdim=True), b - b.mean(1, keepdim=True)
    den = a.norm(dim=1) * b.norm(dim=1)
    return torch.where(den > 0, (a * b).sum(1) / den.clamp_min(1e-12), torch.zeros_like(den))


def measure(model, images, layer, batch=250):
    """The layer's numbers (see the module docstring) on uint8 images (N, 3, 32, 32)."""
    with torch.no_grad():
        order = torch.cat([predict.logits(model, images[i:i + batch], utils.Runtime(torch.device("cpu"), "fp32"))
                           .argsort(1, descending=True)[:, :2] for i in range(0, len(images), batch)])
    maps, second = [], []
    for i in range(0, len(images), batch):
        m, size = predict.gradcam_maps(model, images[i:i + batch], order[i:i + batch, 0], layer)
        s, _ = predict.gradcam_maps(model, images[i:i + batch], order[i:i + batch, 1], layer)
        maps.append(m)
        second.append(s)
    maps, second = torch.cat(maps), torch.cat(second)                    # (N, 32, 32) each
    whole = probabilities(model, images.float(), order[:, 0])
    masked = probabilities(model, images.float() * maps[:, None], order[:, 0])
    drop = ((whole - masked).clamp_min(0) / whole).mean().item() * 100
    return {"layer": layer, "map_size": list(size), "under_5x5": min(size) < 5, "images": len(images),
            "average_drop_percent": drop, "increase_percent": (masked > whole).float().mean().item() * 100,
            "class_overlap": pearson(maps.flatten(1), second.flatten(1)).mean().item()}


def main():
    p = argparse.ArgumentParser(prog="python -m experiments.gradcam_layer_choice", description=__doc__.split("\n\n")[0])
    p.add_argument("model", help="a model.pt written by train.py")
    p.add_argument("--data-dir", default="./data", help="folder with cifar-10-batches-py")
    p.add_argument("--n", type=int, default=1000, help="how many images, from the first of the test_batch")
    p.add_argument("--layers", default="layer3,layer2,layer1,prep", help="comma-separated layer names")
    p.add_argument("--out", default="", help="write the record (JSON) here")
    a = p.parse_args()
    layers, model, d = model_data_and_layers(a)
    torch.manual_seed(0)
    images = d.test_images[:a.n]
    t0 = time.perf_counter()
    rows = [measure(model, images, layer) for layer in layers]
    for r in rows:
        print(f"{r['layer']:8s} {r['map_size'][0]:2d}x{r['map_size'][1]:<2d} average drop {r['average_drop_percent']:5.1f}%  "
              f"increase {r['increase_percent']:5.1f}%  class overlap {r['class_overlap']:.3f}"
              + ("  (under 5x5)" if r["under_5x5"] else ""))
    if a.out:
        record = {"command": "python -m experiments.gradcam_layer_choice " + " ".join(sys.argv[1:]),
                  "date": time.strftime("%Y-%m-%d"), "data": {"split": d.eval_split, "images": len(images),
                                                              "data_dir": a.data_dir},
                  "runtime": utils.pick_runtime("cpu", "fp32").describe(), "seconds": time.perf_counter() - t0,
                  "model": a.model, "width": model.prep.conv.out_channels, "layers": rows}
        utils.atomic_write_json(record, a.out)
        print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
