"""Is the public JPEG copy of CIFAR-10 what Pillow writes at quality 75 with 4:2:0 chroma subsampling?

    python -m experiments.jpeg_copy_check --out experiments/measurements/jpeg_copy_vs_pillow_q75.json

On the 5,000 pairs of `../shared/data/cifar10_pairs.py` (original pixels and their JPEG copies):
the copies' error against the originals, the error of the originals saved by Pillow at quality 75
(4:2:0), how much saving a copy again at quality 75 changes it, and the chroma subsampling
written in the copies' files. Mean absolute differences in grey levels of 255. Writes numbers
only, never a picture.
"""
import argparse
import importlib.util
import io
import json
import os
import zipfile

import numpy as np

from experiments.jpeg_penalty import reencode

SHARED = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "..", "shared", "data")
SAMPLING = {0: "4:4:4", 1: "4:2:2", 2: "4:2:0"}        # PIL.JpegImagePlugin.get_sampling


def mae(a, b):
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


def check(shared=SHARED):
    import PIL
    from PIL import Image, JpegImagePlugin
    spec = importlib.util.spec_from_file_location("cifar10_pairs", os.path.join(shared, "cifar10_pairs.py"))
    pairs = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(pairs)
    npz, zip_path = os.path.join(shared, "cifar10-originals-5k.npz"), os.path.join(shared, "cifar10-jpeg-train.zip")
    originals, jpeg, _, names = pairs.load_pairs(npz, zip_path)
    with zipfile.ZipFile(zip_path) as z:
        sampling = sorted({SAMPLING.get(JpegImagePlugin.get_sampling(Image.open(io.BytesIO(z.read(str(n))))), "other")
                           for n in names})
    return {"pairs": len(names),
            "copy_vs_original_mae": mae(jpeg, originals),
            "pillow_q75_of_originals_vs_original_mae": mae(reencode(originals, 75), originals),
            "pillow_q75_of_copy_vs_copy_mae": mae(reencode(jpeg, 75), jpeg),
            "copy_chroma_subsampling": sampling,
            "pillow": PIL.__version__}


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m experiments.jpeg_copy_check", description=__doc__.split("\n\n")[0])
    p.add_argument("--shared", default=SHARED, help="the folder with cifar10_pairs.py and its two files")
    p.add_argument("--out", default="", help="write the record here as JSON")
    args = p.parse_args(argv)
    record = {"command": "python -m experiments.jpeg_copy_check" + (f" --out {args.out}" if args.out else ""),
              **check(args.shared)}
    print(json.dumps(record, indent=1))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(record, f, indent=1)
            f.write("\n")


if __name__ == "__main__":
    main()
