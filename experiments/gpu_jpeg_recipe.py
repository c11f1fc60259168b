"""Validation accuracy of the full 24-epoch recipe on the JPEG copies over a plan of LRs or recipe changes.

    python ../shared/data/cifar10_jpeg.py DIR          # 40,000 training + 10,000 validation images
    python -m experiments.gpu_jpeg_recipe --data-dir DIR --out runs/gpu_grid --budget 420
    python -m experiments.gpu_jpeg_recipe --data-dir DIR --out runs/candidates --plan candidates --budget 300

Every run of a plan is train.main() in this one process, made for a lent GPU. The grid plans
are the LR grid of docs/lr-rule.md at the length that matters (the full recipe: 24 epochs,
1,872 steps), beside its short CPU grid of 8 epochs on 10,000 images. A plan is an ordered list
of runs, most useful first: the default recipe (range test + rule), the rule with backoff 1, then
fixed LRMAX values (LRMIN = LRMAX / factor), then seed repeats. A run is started only if the
time left in --budget is more than the longest run so far, so the plan is cut at its end, never
in the middle of a run. `results.json` in --out is rewritten after every run (validation
accuracy per epoch, the LRs, the range test's curve where one ran, seconds), so what finished is
kept whatever happens.

The candidates plan measures recipe changes that keep the specification (Cutout kept inside the
image, no weight decay on BatchNorm, label smoothing 0.2, a weight average over 2 epochs) against
the default, 5 seeds each, paired by seed, and prints the paired table (docs/recipe-candidates.md).

The data is the validation split of the JPEG copies of CIFAR-10 training images (cifar10_jpeg.py);
every accuracy here is on those 10,000 validation images, not on the CIFAR-10 test set.
"""
import argparse
import json
import os
import shlex
import sys
import time

import series
import train
import utils

# (name, overrides): the order is the priority. Every run of "grid" and "diagnose" names its LRMIN
# factor (most used 10) or gives both LRs, so these plans reproduce the same runs whatever
# train.py's default factor. "diagnose" follows up "grid": LRMIN factor 20 against 10 over five
# seeds, and how much the specification's "no annihilation" costs (LRMIN = LRMAX / 1000 is close
# to Page's schedule, which ends at 0).
GRID = [
    ("rule", {"lr_min_factor": 10.0}),                     # the range test and its rule, LRMIN = LRMAX / 10
    ("rule-backoff1", {"lr_min_factor": 10.0, "lr_backoff": 1.0}),   # LRMAX = the first minimum
    ("lr0.4", {"lr_min_factor": 10.0, "lr_max": 0.4}),     # Page's LR
    ("lr0.2", {"lr_min_factor": 10.0, "lr_max": 0.2}),
    ("lr0.8", {"lr_min_factor": 10.0, "lr_max": 0.8}),
    ("lr0.1", {"lr_min_factor": 10.0, "lr_max": 0.1}),
    ("rule-backoff1-f20", {"lr_backoff": 1.0, "lr_min_factor": 20.0}),
    ("lr0.05", {"lr_min_factor": 10.0, "lr_max": 0.05}),
    ("rule-s1", {"lr_min_factor": 10.0, "seed": 1}),
    ("rule-backoff1-s1", {"lr_min_factor": 10.0, "lr_backoff": 1.0, "seed": 1}),
    ("rule-s2", {"lr_min_factor": 10.0, "seed": 2}),
    ("rule-backoff1-s2", {"lr_min_factor": 10.0, "lr_backoff": 1.0, "seed": 2}),
    ("lr0.4-s1", {"lr_min_factor": 10.0, "lr_max": 0.4, "seed": 1}),
    ("lr0.2-s1", {"lr_min_factor": 10.0, "lr_max": 0.2, "seed": 1}),
    ("lr0.4-s2", {"lr_min_factor": 10.0, "lr_max": 0.4, "seed": 2}),
    ("lr0.2-s2", {"lr_min_factor": 10.0, "lr_max": 0.2, "seed": 2}),
]
DIAGNOSE = [
    ("rule-f20", {"lr_min_factor": 20.0}),
    ("rule-f20-s1", {"lr_min_factor": 20.0, "seed": 1}),
    ("rule-f20-s2", {"lr_min_factor": 20.0, "seed": 2}),
    ("annihilate-lr0.4", {"lr_max": 0.4, "lr_min": 0.0004}),
    ("lr0.4-f20", {"lr_max": 0.4, "lr_min_factor": 20.0}),
    ("lr0.2-f20", {"lr_max": 0.2, "lr_min_factor": 20.0}),
    ("rule-backoff1-f20-s1", {"lr_backoff": 1.0, "lr_min_factor": 20.0, "seed": 1}),
    ("rule-backoff1-f20-s2", {"lr_backoff": 1.0, "lr_min_factor": 20.0, "seed": 2}),
    ("annihilate-lr0.2", {"lr_max": 0.2, "lr_min": 0.0002}),
    ("rule-f20-smooth0.2", {"lr_min_factor": 20.0, "label_smoothing": 0.2}),
    ("rule-s3", {"lr_min_factor": 10.0, "seed": 3}),
    ("rule-f20-s3", {"lr_min_factor": 20.0, "seed": 3}),
    ("rule-s4", {"lr_min_factor": 10.0, "seed": 4}),
    ("rule-f20-s4", {"lr_min_factor": 20.0, "seed": 4}),
    ("annihilate-lr0.4-s1", {"lr_max": 0.4, "lr_min": 0.0004, "seed": 1}),
    ("rule-f20-tta", {"lr_min_factor": 20.0, "tta": True}),
    ("rule-backoff1-f20-s3", {"lr_backoff": 1.0, "lr_min_factor": 20.0, "seed": 3}),
    ("rule-backoff1-f20-s4", {"lr_backoff": 1.0, "lr_min_factor": 20.0, "seed": 4}),
    ("rule-backoff1-s3", {"lr_min_factor": 10.0, "lr_backoff": 1.0, "seed": 3}),
    ("rule-backoff1-s4", {"lr_min_factor": 10.0, "lr_backoff": 1.0, "seed": 4}),
    ("lr0.8-f20", {"lr_max": 0.8, "lr_min_factor": 20.0}),
    ("lr0.1-f20", {"lr_max": 0.1, "lr_min_factor": 20.0}),
]
# Candidates within the specification, each against the default recipe, paired by seed (the
# same seed: the same initial weights and, but for the candidate, the same data order). By seed
# first, so a plan cut by the budget stays balanced: 5 seeds x 5 arms.
CANDIDATES = [(f"{arm}-s{seed}", {**overrides, "seed": seed}) for seed in range(5) for arm, overrides in (
    ("default", {}),
    ("cutout-inside", {"cutout_inside": True}),           # Page's Cutout: always 64 pixels
    ("no-bn-wd", {"bn_weight_decay": False}),
    ("smooth0.2", {"label_smoothing": 0.2}),               # Page's final version
    ("ema2", {"ema_epochs": 2.0}),                         # Page's bag of tricks: a weight average
)]
PLANS = {"grid": GRID, "diagnose": DIAGNOSE, "candidates": CANDIDATES}


def paired_table(rows, baseline="default"):
    """Markdown: each arm (the run name before "-s<seed>") against `baseline` on the seeds both
    finished (series.paired_difference): mean ± sample std of the validation accuracy, the paired
    difference ± its standard error, and how many runs diverged (never left out silently)."""
    acc, diverged = {}, {}
    for r in rows:
        arm = r["name"].rsplit("-s", 1)[0]
        if r["val_accuracy"] is None:
            diverged[arm] = diverged.get(arm, 0) + 1
        else:
            acc.setdefault(arm, {})[r["seed"]] = r["val_accuracy"]
    lines = ["| arm | seeds | validation accuracy (mean ± std) | minus default (± s.e.) | diverged |",
             "|---|---|---|---|---|"]
    arms = dict.fromkeys(r["name"].rsplit("-s", 1)[0] for r in rows)      # in the plan's order
    for arm in sorted(arms, key=lambda a: a != baseline):                   # the baseline first
        d = series.describe(list(acc.get(arm, {}).values()))
        mean = "-" if d["mean"] is None else f"{d['mean']:.2f}" + (f" ± {d['std']:.2f}" if d["std"] else "")
        diff = "-"
        if arm != baseline and arm in acc and baseline in acc:
            p = series.paired_difference(acc[arm], acc[baseline])
            if p["seeds"]:
                se = f" ± {p['diff_se']:.2f}" if p["diff_se"] else ""
                diff = f"{p['diff_mean']:+.2f}{se} ({len(p['seeds'])} pairs)"
        lines.append(f"| {arm} | {d['n']} | {mean} | {diff} | {diverged.get(arm, 0)} |")
    return "\n".join(lines)


def summarize(name, overrides, record, seconds):
    rt = record.get("lr_range_test") or {}
    return {"name": name, "overrides": overrides, "status": record["status"],
            "seed": record["config"]["seed"], "lr_max": record["lr_max"], "lr_min": record["lr_min"],
            "lr_source": record["lr_source"], "val_accuracy": record.get("test_accuracy"),
            "val_acc_per_epoch": [h["test_acc"] for h in record["history"]],
            "train_acc_last_epoch": record["history"][-1].get("train_acc") if record["history"] else None,
            "range_test": {k: rt.get(k) for k in ("lrs", "losses", "smoothed", "lr_max", "lr_min", "rule",
                                                   "stop_reason")} if rt else None,
            "runtime": record["runtime"], "timings": record["timings"], "wall_seconds": seconds}


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    p = argparse.ArgumentParser(prog="python -m experiments.gpu_jpeg_recipe", description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", required=True)
    p.add_argument("--out", default="runs/gpu_grid")
    p.add_argument("--budget", type=float, default=420, help="seconds for the whole plan")
    p.add_argument("--plan", default="grid", choices=PLANS)
    p.add_argument("--only", default="", help="comma-separated run names (default: the whole plan)")
    p.add_argument("--set", default="{}", help="JSON overrides for every run (smoke tests: tiny settings)")
    args = p.parse_args(argv)
    command = "python -m experiments.gpu_jpeg_recipe " + shlex.join(argv)     # what results.json says ran it
    common = {"data_dir": args.data_dir, "download": False, "progress": False, **json.loads(args.set)}
    plan = [(n, o) for n, o in PLANS[args.plan] if not args.only or n in args.only.split(",")]
    os.makedirs(args.out, exist_ok=True)
    rows, longest, t0 = [], 0.0, time.perf_counter()
    for name, overrides in plan:
        left = args.budget - (time.perf_counter() - t0)
        if left < longest * 1.1:
            print(f"=== {name}: skipped, {left:.0f} s left of the budget < the longest run so far ({longest:.0f} s)")
            continue
        plots = name == plan[0][0]                   # the pictures of the plan's first run only
        t = time.perf_counter()
        out_dir = os.path.join(args.out, name)
        try:
            record = train.main(**{**common, "plots": plots, **overrides, "out_dir": out_dir})
        except utils.Diverged as e:          # a failure of that LR, not of the plan: go on
            print(f"=== {name}: diverged ({e})")
            with open(os.path.join(out_dir, "metrics.json")) as f:
                record = json.load(f)
        seconds = time.perf_counter() - t
        longest = max(longest, seconds)
        rows.append(summarize(name, overrides, record, seconds))
        utils.atomic_write_json({"data": f"{record['data']['train_images']:,} training images, "
                                         f"{record['data']['test_images']:,} {record['data']['eval_split']} "
                                         f"images ({record['data']['source']}, {args.data_dir})",
                                 "command": command, "runs": rows},
                                os.path.join(args.out, "results.json"))
        acc = "diverged" if record.get("test_accuracy") is None else f"{record['test_accuracy']:.2f}%"
        print(f"=== {name}: LRMAX {record['lr_max']:.4g} LRMIN {record['lr_min']:.4g} -> "
              f"{acc} {record['data']['eval_split']}, {seconds:.0f} s", flush=True)
    print("\nname                 seed  LRMAX    LRMIN     val acc   s")
    for r in rows:
        acc = "  diverged" if r["val_accuracy"] is None else f"{r['val_accuracy']:>6.2f}%"
        print(f"{r['name']:<20} {r['seed']:>4}  {r['lr_max']:<8.4g} {r['lr_min']:<9.4g} {acc}  "
              f"{r['wall_seconds']:.0f}")
    if args.plan == "candidates":
        print("\n" + paired_table(rows))


if __name__ == "__main__":
    main()
