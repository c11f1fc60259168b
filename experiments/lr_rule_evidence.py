"""Evidence for the LR range test's rule: where do its picks land against a grid of trained LRs?

    # synthetic data (the records experiments/measurements/lr_rule_evidence_width*.json)
    python -m experiments.lr_rule_evidence --width 16 --epochs 4 --grid 0.05,0.1,0.2,0.4,0.8,1.6,3.2,6.4
    # the JPEG copies: 10,000 of the 40,000 training images of `cifar10_jpeg.py`'s split, 8 epochs,
    # evaluated on its 10,000-image validation split (written as test_batch)
    python -m experiments.lr_rule_evidence --data-dir DIR --subset 10000 --epochs 8 --lr-test-iters 0 \
        --grid 0.025,0.05,0.1,0.2,0.4,0.8,1.6 --out runs/lr_grid

For one setting it (1) runs the range test exactly as train.main() does (`--lr-test-iters 0`:
main's own step count) and reports the LRMAX that several rules would pick from that curve
(`candidate_picks`), then (2) trains the one-cycle recipe at a grid of LRMAX values
(LRMIN = LRMAX / --min-factor) and records the final accuracy of each. A good rule picks inside
the plateau of the best LRs, never where training degrades. Each grid point keeps its own
folder (metrics.json, model.pt) under --out, and `evidence.json` there grows one row at a time,
so an interrupted grid loses at most the point in progress and `--skip-done` resumes it.
"""
import argparse
import json
import os

import data as cifar
import lr_finder
import train
import utils


def valley(lrs, losses):
    """fastai's "valley" suggestion (fastai/callback/schedule.py): the LR halfway down the longest
    strictly falling run (not necessarily contiguous) of the curve. Reimplemented here, O(n^2)."""
    n, longest = len(losses), [1] * len(losses)
    end = 0
    for i in range(1, n):
        for j in range(i):
            if losses[i] < losses[j] and longest[i] < longest[j] + 1:
                longest[i] = longest[j] + 1
        if longest[i] > longest[end]:
            end = i
    start = end - longest[end]
    third = (end - start) / 3
    return lrs[start + int(third) + int(third / 2)]


def candidate_picks(lrs, losses, smoothed):
    """LRMAX that each candidate rule reads off one range-test curve."""
    i_min = min(range(len(smoothed)), key=smoothed.__getitem__)
    picks = {f"smoothed min / {b}": lrs[i_min] / b for b in (1, 2, 3, 5, 10)}
    picks["raw min"] = lrs[min(range(len(losses)), key=losses.__getitem__)]
    # steepest fall of the smoothed loss per step (= per equal step of log LR), before its minimum
    slope = [smoothed[i + 1] - smoothed[i] for i in range(max(1, i_min))]
    picks["steepest (torch-lr-finder)"] = lrs[min(range(len(slope)), key=slope.__getitem__)]
    picks["valley (fastai)"] = valley(lrs, smoothed)
    picks["rule of this repository"] = lr_finder.pick_lrs(lrs, smoothed)[0]
    return picks


def run(**kw):
    try:
        return train.main(plots=False, progress=False, **kw)
    except utils.Diverged as e:
        return {"diverged": str(e)}


def range_test_only(common):
    """main()'s range test on main()'s data and model, without the training that follows it:
    a lr_finder.RangeTestResult."""
    cfg = train.Config.from_keywords(common)
    rt = utils.pick_runtime(cfg.device, cfg.precision)
    d = train.load_data(cfg)
    loader = cifar.DeviceLoader(d.train_images, d.train_labels, cfg.batch_size, train=True, device=rt.device,
                                seed=cfg.seed, pad_mode=cfg.pad_mode, cutout=cfg.cutout)
    learner = train.build(cfg, rt, len(loader))
    *_, result = train.find_lrs(cfg, learner, loader)
    return lr_finder.RangeTestResult(**result)


def main():
    p = argparse.ArgumentParser(prog="python -m experiments.lr_rule_evidence", description=__doc__.split("\n\n")[0])
    p.add_argument("--width", type=int, default=64)
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--synthetic-train", type=int, default=10240)
    p.add_argument("--subset", type=int, default=0, help="train on the first N training images (0 = all)")
    p.add_argument("--grid", type=str, default="0.025,0.05,0.1,0.2,0.4,0.8,1.6")
    p.add_argument("--min-factor", type=float, default=10.0, help="LRMIN = LRMAX / this at every grid point")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-dir", default="", help="folder with cifar-10-batches-py; empty = synthetic data")
    p.add_argument("--lr-test-iters", type=int, default=0, help="range-test steps; 0 = as train.main()")
    p.add_argument("--no-range-test", action="store_true", help="only the grid")
    p.add_argument("--skip-done", action="store_true", help="keep grid points already in evidence.json")
    p.add_argument("--out", type=str, default="runs/lr_evidence")
    a = p.parse_args()
    data = (dict(data_dir=a.data_dir, download=False) if a.data_dir
            else dict(synthetic=True, synthetic_train=a.synthetic_train))
    common = dict(width=a.width, epochs=a.epochs, seed=a.seed, subset=a.subset,
                  lr_test_iters=a.lr_test_iters, **data)
    os.makedirs(a.out, exist_ok=True)
    path = os.path.join(a.out, "evidence.json")
    evidence = {"setting": vars(a), "grid": []}
    if os.path.exists(path):
        with open(path) as f:
            evidence = {**json.load(f), "setting": vars(a)}
    if not a.no_range_test:
        result = range_test_only({**common, "out_dir": a.out})
        evidence["range_test"] = result.to_dict()
        evidence["picks"] = candidate_picks(result.lrs, result.losses, result.smoothed)
        lr_finder.plot_range_test(result, os.path.join(a.out, "range_test.png"))
        utils.atomic_write_json(evidence, path)
        print(json.dumps(evidence["picks"]), flush=True)
    done = {(r["lr_max"], r["min_factor"]) for r in evidence["grid"]} if a.skip_done else set()
    for lr in [float(v) for v in a.grid.split(",") if v]:
        if (lr, a.min_factor) in done:
            continue
        out = os.path.join(a.out, f"lr{lr:g}_f{a.min_factor:g}")
        r = run(lr_max=lr, lr_min=lr / a.min_factor, out_dir=out, **common)
        row = {"lr_max": lr, "min_factor": a.min_factor, "diverged": "diverged" in r,
               "accuracy": r.get("test_accuracy"), "correct": r.get("test_correct"),
               "history": [h["test_acc"] for h in r.get("history", [])],
               "train_seconds": r.get("timings", {}).get("train_seconds")}
        evidence["grid"] = [g for g in evidence["grid"] if (g["lr_max"], g["min_factor"]) != (lr, a.min_factor)]
        evidence["grid"].append(row)
        utils.atomic_write_json(evidence, path)
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
