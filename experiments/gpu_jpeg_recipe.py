"""Validation accuracy of the full 24-epoch recipe on the JPEG copies over a plan of arms (LRs or recipe changes) times seeds.

    python ../shared/data/cifar10_jpeg.py DIR          # 40,000 training + 10,000 validation images
    python -m experiments.gpu_jpeg_recipe --data-dir DIR --plan candidates --out runs/candidates
    torchrun --nproc-per-node=2 -m experiments.gpu_jpeg_recipe --data-dir DIR --plan candidates --out runs/candidates

A plan is a list of arms, each a few settings of train.py, run for --seeds seeds: a series of
series.py (series.run_series with the arms as its points), so it runs in one process or spreads
over torchrun's processes and GPUs exactly as `train.py --sweep` does, each run in
<out>/<its settings>/seed-<s>/ ("default" for the recipe as it is), and the same command again
continues it after any stop (a `timeout`, a lost machine). <out>/summary.json and README.md hold a
table per arm: n, mean, sample std, min and max of the validation accuracy, and its difference
from the plan's first arm, paired by seed (the same seed: the same initial weights and, but for
the arm's change, the same data order), with its standard error.

The plans: `grid`, the LR grid of docs/lr-rule.md at the length that matters (the range test and
its rule beside fixed LRMAX values, LRMIN = LRMAX / 10); `diagnose`, its follow-up (LRMIN factor
20 against 10, and what the specification's "no annihilation" costs: LRMIN = LRMAX / 1000 is close
to Page's schedule, which ends at 0); `candidates`, the recipe changes that keep the
specification, each against the default (docs/recipe-candidates.md). The records of the grid,
diagnose and candidates screen in experiments/measurements/ were made by this script's earlier
runner (commit 25e1a80: one process, the arms in priority order under a time budget); these plans
hold the same arms.

The data is the validation split of the JPEG copies of CIFAR-10 training images (cifar10_jpeg.py);
every accuracy here is on those 10,000 validation images, not on the CIFAR-10 test set.
"""
import argparse
import json
import sys

import series
import settings
import train

# Arms: each a dict of train.py settings; the first is the baseline of the paired differences.
GRID = [{"lr_min_factor": 10.0}, {"lr_min_factor": 10.0, "lr_backoff": 1.0}, {"lr_min_factor": 10.0, "lr_max": 0.4},
        {"lr_min_factor": 10.0, "lr_max": 0.2}, {"lr_min_factor": 10.0, "lr_max": 0.8},
        {"lr_min_factor": 10.0, "lr_max": 0.1}, {"lr_min_factor": 20.0, "lr_backoff": 1.0},
        {"lr_min_factor": 10.0, "lr_max": 0.05}]
DIAGNOSE = [{"lr_min_factor": 20.0}, {"lr_min_factor": 10.0}, {"lr_min_factor": 20.0, "lr_backoff": 1.0},
            {"lr_min_factor": 10.0, "lr_backoff": 1.0}, {"lr_max": 0.4, "lr_min": 0.0004},
            {"lr_max": 0.2, "lr_min": 0.0002}, {"lr_max": 0.4, "lr_min_factor": 20.0},
            {"lr_max": 0.2, "lr_min_factor": 20.0}, {"lr_max": 0.8, "lr_min_factor": 20.0},
            {"lr_max": 0.1, "lr_min_factor": 20.0}, {"lr_min_factor": 20.0, "label_smoothing": 0.2},
            {"lr_min_factor": 20.0, "tta": True}]
CANDIDATES = [{},                                       # the default recipe
              {"cutout_inside": True},                  # Page's Cutout: always 64 pixels
              {"bn_weight_decay": False},
              {"label_smoothing": 0.2},                 # Page's final version
              {"ema_epochs": 2.0}]                      # Page's bag of tricks: a weight average
PLANS = {"grid": (GRID, 3), "diagnose": (DIAGNOSE, 5), "candidates": (CANDIDATES, 5)}      # arms, seeds


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    p = argparse.ArgumentParser(prog="python -m experiments.gpu_jpeg_recipe", description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", required=True, help="a cifar-10-batches-py folder of cifar10_jpeg.py")
    p.add_argument("--out", default="runs/gpu_grid")
    p.add_argument("--plan", default="grid", choices=PLANS)
    p.add_argument("--seeds", type=int, default=None, help="seeds of every arm (default: the plan's, 3 or 5)")
    p.add_argument("--set", default="{}", help="JSON settings for every run (smoke tests: tiny settings)")
    args = p.parse_args(argv)
    arms, seeds = PLANS[args.plan]
    try:
        overrides = json.loads(args.set)
        assert isinstance(overrides, dict)
    except (ValueError, AssertionError):
        p.error(f"--set {args.set!r}: give a JSON object of train.py settings, such as '{{\"width\": 32}}'")
    cfg = train.Config.from_keywords({"data_dir": args.data_dir, "download": False, "progress": False,
                                      "plots": False, **overrides, "seeds": args.seeds or seeds, "out_dir": args.out})
    return series.run_series(cfg, train.Config, train.train, points=arms)


if __name__ == "__main__":
    sys.exit(settings.in_one_line(main, train.Config))     # a mistake, a refused folder, SIGTERM: one line
