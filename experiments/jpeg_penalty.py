"""What the JPEG compression of our only full copy of CIFAR-10 costs the recipe, measured on pairs.

    python -m experiments.jpeg_penalty --out runs/jpeg_penalty             # small scale: every arm, resumable
    python -m experiments.jpeg_penalty --out runs/jpeg_penalty --report    # tables, fit and figure from the records
    python -m experiments.jpeg_penalty --scale full --out runs/jpeg_full   # a lent GPU: the 40,000/10,000 JPEG split

The pictures (../shared/data): 5,000 CIFAR-10 training images as original, uncompressed pixels,
and the public copy of the 50,000 stored as JPEG quality 75 (4:2:0). `cifar10_pairs.py` writes the
5,000 twice, original and JPEG, with the same 4,000 / 1,000 stratified split, so two runs that
differ only in the compression of their pictures can be paired by seed. Every accuracy here is on
a VALIDATION split of CIFAR-10 training images, never on the official test set.

Small scale (`--scale small`, the default), in this order, each run the full recipe of train.py
(24 epochs, batch 512, peak at epoch 5) at --width:
1. found:    the LRs found by the range test as main() finds them; original and JPEG, seeds 0..4.
             Then each JPEG-trained model judged on the original validation images and the
             reverse (predict.evaluate_tta, what `predict.py MODEL --evaluate` runs).
2. fixed:    LRMAX = the median of the JPEG side's found LRMAX, LRMIN = LRMAX / 20, for both
             sides, seeds 0..4: the data is the only variable. Where a found run's range test
             found exactly these LRs, that run is the fixed-LR run (the test restores weights and
             optimizer bit for bit): one is repeated with the LRs given, as a check, the rest reused.
3. degraded: the JPEG copies re-encoded by Pillow at quality 50, 30 and 15 (4:2:0 as the copy
             has it), fixed LRs, seeds 0..4. The fit of accuracy against the pixel error (mean
             absolute difference from the original pixels, grey levels of 255) through the JPEG
             points, extrapolated to error 0, is checked against the measured original point.

Full scale (`--scale full`: 25 runs of the full-width recipe on 40,000 images, a lent GPU's work;
docs/jpeg-penalty.md gives their time on an H200): only JPEG copies exist of 45,000 of the
images, so the original point is inferred: the default recipe (found LRs) on the
40,000 / 10,000 JPEG split, seeds 0..4; then fixed LRs (median found LRMAX, / 20) on the JPEG
copies and their re-encodings at 50, 30, 15, seeds 0..4; the same fit, extrapolated to error 0.
The errors of the re-encodings are measured on the 5,000 pairs (the same operation on the same
kind of pictures), since the originals of the rest are not here.

Every run's metrics.json stays in --out/runs/<arm>-<data>/seed-<s>/; the command again continues
(finished runs are kept, an interrupted one resumes from its checkpoint). --report writes
--out/jpeg_penalty.json, prints the markdown tables and draws --out/jpeg_penalty.png.
"""
import argparse
import io
import json
import math
import os
import pickle
import shutil
import shlex
import statistics
import subprocess
import sys
import time

import numpy as np

import data as cifar
import plots
import series
import settings
import train
import utils

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))     # the repository root

QUALITIES = (50, 30, 15)            # re-encodings of the quality-75 copies
BATCHES = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]


# ==============================================================================================
# Data: the pairs, the re-encodings, their pixel errors

def reencode(images, quality):
    """uint8 (N, 3, 32, 32) -> the same pictures saved by Pillow as JPEG at `quality` with 4:2:0
    chroma subsampling (as the public copy), decoded again."""
    from PIL import Image
    out = np.empty_like(images)
    for i, im in enumerate(images):
        buf = io.BytesIO()
        Image.fromarray(im.transpose(1, 2, 0)).save(buf, "JPEG", quality=quality, subsampling=2)
        out[i] = np.asarray(Image.open(buf).convert("RGB")).transpose(2, 0, 1)
    return out


def degrade_folder(src, dst, quality):
    """Copy the cifar-10-batches-py folder `src` to `dst` with every image re-encoded."""
    if os.path.exists(os.path.join(dst, "test_batch")):
        return
    tmp = dst + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    for name in BATCHES:
        with open(os.path.join(src, name), "rb") as f:
            batch = pickle.load(f, encoding="latin1")
        images = batch["data"].reshape(-1, 3, 32, 32)
        batch["data"] = reencode(images, quality).reshape(len(images), 3072)
        with open(os.path.join(tmp, name), "wb") as f:
            pickle.dump(batch, f, protocol=2)
    if os.path.exists(os.path.join(src, "batches.meta")):
        shutil.copy(os.path.join(src, "batches.meta"), tmp)
    os.rename(tmp, dst)


def folder_images(root):
    """All images of a written folder, training batches then test_batch: uint8 (N, 3, 32, 32)."""
    d = cifar.load_cifar10(root, download=False, cache=False)
    return np.concatenate([d.train_images.numpy(), d.test_images.numpy()])


def pixel_errors(pairs_dir):
    """Mean absolute difference from the original pixels (grey levels of 255) and PSNR (dB) of
    the JPEG copies and of each re-encoding, over all 5,000 pairs."""
    original = folder_images(os.path.join(pairs_dir, "original")).astype(np.float64)
    out = {"original": {"mae": 0.0, "psnr": None}}
    for name in ["jpeg"] + [f"jpeg-q{q}" for q in QUALITIES]:
        diff = folder_images(os.path.join(pairs_dir, name)).astype(np.float64) - original
        out[name] = {"mae": float(np.abs(diff).mean()), "psnr": float(10 * np.log10(255**2 / (diff**2).mean()))}
    return out


def prepare(args):
    """Write the folders of the chosen scale into --out/data; returns {data name: folder}."""
    root = os.path.join(args.out, "data")
    pairs = os.path.join(root, "pairs")
    if args.errors_from:                 # the x axis measured already: the pairs are not needed
        pass
    elif not os.path.exists(os.path.join(pairs, "jpeg", "cifar-10-batches-py", "test_batch")):
        subprocess.run([sys.executable, os.path.join(args.shared, "cifar10_pairs.py"), pairs], check=True)
    for q in QUALITIES if not args.errors_from else ():   # the pairs' re-encodings: the fit's x axis
        degrade_folder(os.path.join(pairs, "jpeg", "cifar-10-batches-py"),
                       os.path.join(pairs, f"jpeg-q{q}", "cifar-10-batches-py"), q)
    if args.scale == "small":
        return {name: os.path.join(pairs, name) for name in ["original", "jpeg"] + [f"jpeg-q{q}" for q in QUALITIES]}
    full = os.path.join(root, "full")
    if not os.path.exists(os.path.join(full, "jpeg", "cifar-10-batches-py", "test_batch")):
        subprocess.run([sys.executable, os.path.join(args.shared, "cifar10_jpeg.py"), os.path.join(full, "jpeg")],
                       check=True)
    for q in QUALITIES:
        degrade_folder(os.path.join(full, "jpeg", "cifar-10-batches-py"),
                       os.path.join(full, f"jpeg-q{q}", "cifar-10-batches-py"), q)
    return {name: os.path.join(full, name) for name in ["jpeg"] + [f"jpeg-q{q}" for q in QUALITIES]}


# ==============================================================================================
# Runs

def run_one(args, arm, data_name, folder, seed, lrs):
    """train.main on `folder`; -> its record. A finished run (complete or diverged) is kept, after
    series.earlier_run checked it was made with these settings; an interrupted one resumes."""
    out_dir = os.path.join(args.out, "runs", f"{arm}-{data_name}", f"seed-{seed}")
    overrides = {"data_dir": folder, "download": False, "width": args.width, "seed": seed,
                 "out_dir": out_dir, "plots": False, "progress": False, **lrs, **json.loads(args.set)}
    record = series.earlier_run(out_dir, train.Config.from_keywords(overrides))
    if record and record["status"] in ("complete", "diverged"):
        return record
    checkpoint = os.path.join(out_dir, "checkpoint.pt")
    if record and os.path.exists(checkpoint):
        overrides = {**{k: v for k, v in overrides.items() if k in settings.RESUME_FREE}, "resume": checkpoint}
    t = time.perf_counter()
    try:
        record = train.main(**overrides)
    except utils.Diverged:
        with open(os.path.join(out_dir, "metrics.json")) as f:
            record = json.load(f)
    acc = record.get("test_accuracy")
    print(f"=== {arm} {data_name} seed {seed}: LRMAX {record['lr_max']:.4g} LRMIN {record['lr_min']:.4g} -> "
          f"{'diverged' if acc is None else f'{acc:.2f}%'} {record['data']['eval_split']} "
          f"({time.perf_counter() - t:.0f} s)", flush=True)
    return record


def cross_evaluate(args, folders, seeds):
    """The found arm's models judged on the other side's validation images (plain and flip TTA)."""
    import predict
    path = os.path.join(args.out, "cross.json")
    rows = read_json(path) if os.path.exists(path) else []
    done = {(r["trained_on"], r["seed"]) for r in rows}
    for seed in seeds:
        for trained_on, judged_on in (("jpeg", "original"), ("original", "jpeg")):
            if (trained_on, seed) in done:
                continue
            model = predict.load_model(os.path.join(args.out, "runs", f"found-{trained_on}", f"seed-{seed}", "model.pt"))
            r = predict.evaluate_tta(model, folders[judged_on], download=False)
            rows.append({"trained_on": trained_on, "judged_on": judged_on, "seed": seed, "n": r["n"],
                         "split": r["split"], "accuracy": r["plain"]["accuracy"], "tta_accuracy": r["tta"]["accuracy"]})
            utils.atomic_write_json(rows, path)
    return rows


def same_lrs(record, lrs):
    return record is not None and (record["lr_max"], record["lr_min"]) == (lrs["lr_max"], lrs["lr_min"])


def read_json(path):
    with open(path) as f:
        return json.load(f)


def fixed_lrs(records):
    lr_max = statistics.median(r["lr_max"] for r in records)
    return {"lr_max": lr_max, "lr_min": lr_max / train.Config.lr_min_factor}


def run_plan(args):
    folders = prepare(args)
    if args.scale == "small":
        seeds = range(args.seeds)
        found = {}
        for s in seeds:
            for name in ("original", "jpeg"):
                found[name, s] = run_one(args, "found", name, folders[name], s, {})
        cross_evaluate(args, folders, seeds)
        lrs = fixed_lrs([found["jpeg", s] for s in seeds])
        sides = ["original", "jpeg"] + [f"jpeg-q{q}" for q in QUALITIES]
    else:
        seeds = range(args.fixed_seeds)
        lrs = fixed_lrs([run_one(args, "found", "jpeg", folders["jpeg"], s, {}) for s in seeds])
        sides = ["jpeg"] + [f"jpeg-q{q}" for q in QUALITIES]
    print(f"fixed LRs: LRMAX {lrs['lr_max']:.4g}, LRMIN {lrs['lr_min']:.4g}", flush=True)
    checked = False
    for s in range(args.fixed_seeds):              # by seed first: a cut plan stays balanced
        for name in sides:
            if args.scale == "small" and name in ("original", "jpeg") and same_lrs(found.get((name, s)), lrs):
                # The range test found these very LRs: the found run IS the fixed-LR run (the test
                # restores the weights and optimizer bit for bit, and draws its own batches). One
                # such run is repeated with the LRs given, to check that; the rest are reused.
                if checked:
                    continue
                checked = True
            run_one(args, "fixed", name, folders[name], s, lrs)


# ==============================================================================================
# Statistics: paired differences, the degradation fit and its interval

def t_quantile(p, df):
    """The p-quantile of Student's t with df degrees of freedom (no scipy: the pdf integrated by
    Simpson's rule, then bisection)."""
    c = math.exp(math.lgamma((df + 1) / 2) - math.lgamma(df / 2)) / math.sqrt(df * math.pi)

    def cdf(t):                          # 0.5 + integral of the pdf from 0 to t
        n = 2000
        h = t / n
        f = [c * (1 + (i * h) ** 2 / df) ** (-(df + 1) / 2) for i in range(n + 1)]
        return 0.5 + h / 3 * (f[0] + f[-1] + 4 * sum(f[1:-1:2]) + 2 * sum(f[2:-1:2]))
    lo, hi = 0.0, 100.0
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if cdf(mid) < p else (lo, mid)
    return (lo + hi) / 2


def describe(v):
    return series.describe(list(v))


def fit_at_zero(xs, ys, degree):
    """Least squares polynomial of `degree` through the points (x = pixel error, y = accuracy);
    -> its coefficients (constant first), the fitted accuracy at x = 0, and, where the points
    leave degrees of freedom, the 95% confidence interval of that value for independent points
    (t with n - degree - 1 df; se and ci95 None where there are none)."""
    X = np.vander(np.asarray(xs, float), degree + 1, increasing=True)        # (n, degree + 1)
    y = np.asarray(ys, float)
    coef, *_ = np.linalg.lstsq(X, y, rcond=None)
    dof = len(y) - degree - 1
    out = {"degree": degree, "coef": coef.tolist(), "at_zero": float(coef[0]), "dof": dof, "se": None, "ci95": None}
    if dof > 0:
        resid = y - X @ coef
        s2 = float(resid @ resid) / dof
        se0 = math.sqrt(s2 * np.linalg.inv(X.T @ X)[0, 0])                    # x = 0: the intercept
        half = t_quantile(0.975, dof) * se0
        out.update(se=se0, ci95=[float(coef[0] - half), float(coef[0] + half)], residual_std=math.sqrt(s2))
    return out


def extrapolate_by_seed(points_by_seed, degree):
    """The accuracy at pixel error 0, seed by seed: points_by_seed maps seed -> [(error, accuracy)]
    (one point per data version). A seed's runs share their initial weights and data order, so
    its points are not independent of each other: each seed gets its own fit, and the interval
    comes from the spread of the seeds' intercepts (mean ± t(n - 1) std / sqrt(n)). It holds
    for the polynomial's form; the extrapolation reaches well below the least error measured."""
    seeds = sorted(s for s, pts in points_by_seed.items() if len({x for x, _ in pts}) > degree)
    fits = {s: fit_at_zero(*zip(*points_by_seed[s]), degree) for s in seeds}
    at_zero = {s: f["at_zero"] for s, f in fits.items()}
    out = {"degree": degree, "seeds": seeds, "at_zero_by_seed": at_zero,
           "coef_mean": np.mean([f["coef"] for f in fits.values()], axis=0).tolist() if fits else None,
           **{k: None for k in ("mean", "se", "ci95")}}
    if len(seeds) > 1:
        v = list(at_zero.values())
        se = statistics.stdev(v) / math.sqrt(len(v))
        half = t_quantile(0.975, len(v) - 1) * se
        out.update(mean=statistics.fmean(v), se=se, ci95=[statistics.fmean(v) - half, statistics.fmean(v) + half])
    return out


def load_records(out):
    """-> ({(arm, data name): {seed: record}} of every complete run under out/runs,
    {(arm, data name): [seeds]} of the diverged ones: counted, never silently left out)."""
    runs, diverged = {}, {}
    base = os.path.join(out, "runs")
    for cond in sorted(os.listdir(base)) if os.path.isdir(base) else []:
        arm, name = cond.split("-", 1)
        for seed_dir in sorted(os.listdir(os.path.join(base, cond))):
            path = os.path.join(base, cond, seed_dir, "metrics.json")
            if os.path.exists(path):
                r = read_json(path)
                if r["status"] == "complete":
                    runs.setdefault((arm, name), {})[r["config"]["seed"]] = r
                elif r["status"] == "diverged":
                    diverged.setdefault((arm, name), []).append(r["config"]["seed"])
    return runs, diverged


def reuse_found_runs(runs):
    """The fixed arm on the original and JPEG sides: a found run whose range test found the fixed
    LRs is that arm's run (see run_plan); -> {side: [seeds reused]}, and `runs` completed with them."""
    reused = {}
    fixed = [r for k, v in runs.items() if k[0] == "fixed" for r in v.values()]
    if not fixed:
        return reused
    lrs = {"lr_max": fixed[0]["lr_max"], "lr_min": fixed[0]["lr_min"]}
    for side in ("original", "jpeg"):
        for seed, r in runs.get(("found", side), {}).items():
            if same_lrs(r, lrs) and seed not in runs.setdefault(("fixed", side), {}):
                runs["fixed", side][seed] = r
                reused.setdefault(side, []).append(seed)
    return reused


JPEG_SIDES = ["jpeg"] + [f"jpeg-q{q}" for q in QUALITIES]


def repeat_check(runs):
    """Each fixed-LR run that repeats a found run with the same LRs, against it: identical?"""
    check = {}
    for side in ("original", "jpeg"):
        for seed, r in runs.get(("fixed", side), {}).items():
            twin = runs.get(("found", side), {}).get(seed)
            if twin and same_lrs(twin, r):
                same = all(a[k] == b[k] for a, b in zip(twin["history"], r["history"])
                           for k in ("test_correct", "train_loss", "test_loss"))
                check[f"{side} seed {seed}"] = {"identical": same and len(twin["history"]) == len(r["history"]),
                                                "found": twin["test_accuracy"], "fixed": r["test_accuracy"]}
    return check


def table(rows, header):
    return "\n".join(["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
                      + ["| " + " | ".join(map(str, r)) + " |" for r in rows])


def pm(d, key="std"):
    return f"{d['mean']:.2f} ± {d[key] or 0:.2f}"


def report(args):
    runs, diverged = load_records(args.out)
    check = repeat_check(runs)
    # the found runs stand in for the fixed arm only where a repeat showed them identical
    reused = reuse_found_runs(runs) if check and all(c["identical"] for c in check.values()) else {}
    acc = {k: {s: r["test_accuracy"] for s, r in v.items()} for k, v in runs.items()}
    errors = (read_json(args.errors_from)["pixel_errors"] if args.errors_from
              else pixel_errors(os.path.join(args.out, "data", "pairs")))
    first = next(iter(next(iter(runs.values())).values()))
    out = {"scale": args.scale, "date": time.strftime("%Y-%m-%d"), "command": args.command,
           "hardware": first["runtime"], "width": first["config"]["width"], "data": first["data"],
           "pixel_errors": errors, "diverged": {f"{a}-{n}": v for (a, n), v in diverged.items()},
           "fixed_vs_found_check": check, "fixed_reuses_found": reused, "arms": {},
           "runs": {f"{a}-{n}": {s: {"accuracy": r["test_accuracy"], "lr_max": r["lr_max"], "lr_min": r["lr_min"],
                                     "train_acc_last": r["history"][-1]["train_acc"],
                                     "test_loss_last": r["history"][-1]["test_loss"],
                                     "per_class": r["per_class_accuracy"],
                                     "train_seconds": r["timings"].get("train_seconds")}
                                 for s, r in v.items()} for (a, n), v in runs.items()}}
    rows = []
    for arm in ("found", "fixed"):
        if (arm, "original") in acc and (arm, "jpeg") in acc:
            p = out["arms"][arm] = series.paired_difference(acc[arm, "original"], acc[arm, "jpeg"])
            lost = sum(len(diverged.get((arm, side), [])) for side in ("original", "jpeg"))
            rows.append((arm, len(p["seeds"]), pm(p["a"]), pm(p["b"]),
                         f"{p['diff_mean']:+.2f} ± {p['diff_se'] or 0:.2f}", lost))
    print(table(rows, ("LRs", "seeds", "original (mean ± std)", "JPEG (mean ± std)",
                       "original - JPEG (± s.e.)", "diverged")))
    for name, c in check.items():
        print(f"fixed-LR repeat of the found run, {name}: {'identical' if c['identical'] else 'DIFFERENT'} "
              f"({c['fixed']:.2f}% vs {c['found']:.2f}%)")
    if reused:
        print("fixed arm: the found runs with the same LRs stand in for " +
              "; ".join(f"{side} seeds {seeds}" for side, seeds in reused.items()))
    report_cross(args, acc, out)
    report_classes(runs, out)
    report_fit(args, acc, errors, out)
    print("\npixel error against the originals (5,000 pairs): "
          + ", ".join(f"{k} {v['mae']:.2f}" for k, v in errors.items()))
    utils.atomic_write_json(out, os.path.join(args.out, "jpeg_penalty.json"))
    return out


def report_cross(args, acc, out):
    """Each side's models judged on both sides' validation images."""
    path = os.path.join(args.out, "cross.json")
    if not os.path.exists(path):
        return
    cross = out["cross"] = read_json(path)
    rows = []
    for side in ("original", "jpeg"):
        for judged in ("original", "jpeg"):
            if judged == side:
                v, tta = list(acc.get(("found", side), {}).values()), None
            else:
                picked = [r for r in cross if r["trained_on"] == side]
                v, tta = [r["accuracy"] for r in picked], [r["tta_accuracy"] for r in picked]
            if v:
                rows.append((side, judged, len(v), pm(describe(v)), f"{statistics.fmean(tta):.2f}" if tta else "-"))
    print("\n" + table(rows, ("trained on", "judged on", "seeds", "accuracy (mean ± std)", "with flip TTA")))
    # The penalty split in two, paired by seed: what compressed training costs (both judged on
    # originals), and what compressed validation images cost (the same JPEG-trained models).
    judged = {(r["trained_on"], r["judged_on"]): {} for r in cross}
    for r in cross:
        judged[r["trained_on"], r["judged_on"]][r["seed"]] = r["accuracy"]
    if ("jpeg", "original") in judged and ("found", "original") in acc and ("found", "jpeg") in acc:
        split = out["penalty_split"] = {
            "training (original/original - jpeg/original)": series.paired_difference(acc["found", "original"],
                                                                                      judged["jpeg", "original"]),
            "validation images (jpeg/original - jpeg/jpeg)": series.paired_difference(judged["jpeg", "original"],
                                                                                       acc["found", "jpeg"])}
        for name, p in split.items():
            print(f"penalty from the {name}: {p['diff_mean']:+.2f} ± {p['diff_se'] or 0:.2f} ({len(p['seeds'])} seeds)")


def report_classes(runs, out):
    """Which classes lose most: per-class accuracy, original - JPEG, found LRs, mean over seeds."""
    if ("found", "original") not in runs or ("found", "jpeg") not in runs:
        return
    a, b = runs["found", "original"], runs["found", "jpeg"]
    seeds = sorted(set(a) & set(b))
    classes = list(a[seeds[0]]["per_class_accuracy"])
    loss = {c: statistics.fmean(a[s]["per_class_accuracy"][c] - b[s]["per_class_accuracy"][c] for s in seeds)
            for c in classes}
    out["per_class_loss_found"] = loss
    print("\nper class, original - JPEG (found LRs, mean over seeds, points): "
          + ", ".join(f"{c} {v:+.1f}" for c, v in sorted(loss.items(), key=lambda kv: -kv[1])))


def report_fit(args, acc, errors, out):
    """Accuracy against pixel error through the JPEG points (fixed LRs), extrapolated to error 0
    seed by seed; at the small scale checked against the originals measured with the same seeds."""
    by_seed = {}
    for name in JPEG_SIDES:
        for seed, a in acc.get(("fixed", name), {}).items():
            by_seed.setdefault(seed, []).append((errors[name]["mae"], a))
    fits = [extrapolate_by_seed(by_seed, degree) for degree in (1, 2)]
    fits = [f for f in fits if f["mean"] is not None]
    if not fits:
        return
    out["fit"] = {"points_by_seed": by_seed, "fits": fits}
    measured = acc.get(("fixed", "original"))
    print("\nvalidation accuracy against pixel error (fixed LRs), fitted seed by seed, at error 0:")
    for f in fits:
        line = (f"  degree {f['degree']}: {f['mean']:.2f}% (95% CI {f['ci95'][0]:.2f} .. {f['ci95'][1]:.2f}, "
                f"{len(f['seeds'])} seeds)")
        if measured:
            check = series.paired_difference(measured, f["at_zero_by_seed"])
            if check["diff_se"]:
                half = t_quantile(0.975, len(check["seeds"]) - 1) * check["diff_se"]
                check["ci95"] = [check["diff_mean"] - half, check["diff_mean"] + half]
                f["measured_minus_fit"] = check
                line += (f"; measured original - fit: {check['diff_mean']:+.2f} "
                         f"(95% CI {check['ci95'][0]:+.2f} .. {check['ci95'][1]:+.2f})")
        print(line)
    if measured:
        out["fit"]["measured_original"] = describe(measured.values())
        print(f"  measured on the originals: {pm(out['fit']['measured_original'])}% ({len(measured)} seeds)")
    plot_fit(out, os.path.join(args.out, "jpeg_penalty.png"))


def plot_fit(out, path):
    """The picture of report_fit: every run's point, each degree's mean fit and its interval at
    error 0, and the measured originals where there are any."""
    fig = plots.new_figure((6.4, 4.2))
    ax = fig.add_subplot()
    points = [p for pts in out["fit"]["points_by_seed"].values() for p in pts]
    xs, ys = zip(*points)
    ax.scatter(xs, ys, color="tab:blue", s=14, label="JPEG copy and its re-encodings (one run each)")
    grid = np.linspace(0, max(xs) * 1.05, 100)
    for f, style in zip(out["fit"]["fits"], ("-", "--")):
        ax.plot(grid, np.polyval(f["coef_mean"][::-1], grid), style, color="tab:blue", alpha=0.6,
                label=f"degree-{f['degree']} fits: {f['mean']:.1f}% at 0 (95% CI {f['ci95'][0]:.1f}-{f['ci95'][1]:.1f})")
        ax.errorbar([0.08 * f["degree"]], [f["mean"]], yerr=[[f["mean"] - f["ci95"][0]], [f["ci95"][1] - f["mean"]]],
                    fmt="none", color="tab:blue", capsize=4, alpha=0.7)
    measured = out["runs"].get("fixed-original")
    if measured and out["scale"] == "small":
        m = out["fit"]["measured_original"]
        ax.scatter([0] * len(measured), [r["accuracy"] for r in measured.values()], color="tab:red", marker="s",
                   s=14, label=f"original pixels, measured: {m['mean']:.1f}%")
    d = out["data"]
    ax.set_xlabel("pixel error: mean |picture - original| (grey levels of 255)")
    ax.set_ylabel(f"validation accuracy (%), {d['test_images']:,} images")
    ax.set_title(f"CIFAR-10 training images, original pixels and JPEG copies: width {out['width']}, "
                 f"{d['train_images']:,} training images,\nfixed LRs, 24 epochs "
                 f"({out['hardware'].get('gpu', out['hardware'].get('cpu'))}, {out['date']})", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper right")
    plots.save_figure(fig, path)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    p = argparse.ArgumentParser(prog="python -m experiments.jpeg_penalty", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="runs/jpeg_penalty", help="folder for the data, the runs and the report")
    p.add_argument("--scale", choices=("small", "full"), default="small")
    p.add_argument("--shared", default=os.path.join(ROOT, "..", "shared", "data"),
                   help="folder with cifar10_pairs.py, cifar10_jpeg.py and their data")
    p.add_argument("--width", type=int, default=64, help="network width (64: the specification)")
    p.add_argument("--seeds", type=int, default=5, help="seeds of the found-LR arm (small scale)")
    p.add_argument("--fixed-seeds", type=int, default=5, help="seeds of the fixed-LR and degraded arms")
    p.add_argument("--set", default="{}", help="JSON overrides for every run (smoke tests: tiny settings)")
    p.add_argument("--errors-from", default="", help="a jpeg_penalty.json whose pixel_errors to use (measured on "
                   "the 5,000 pairs) instead of writing the pairs: a GPU machine then needs only the JPEG zip")
    p.add_argument("--report", action="store_true", help="only the tables, fit and figure from the records")
    args = p.parse_args(argv)
    args.command = "python -m experiments.jpeg_penalty " + shlex.join(argv)     # what the record says ran it
    if args.errors_from and args.scale == "small":
        p.error("--errors-from is for --scale full: the small scale trains on the pairs themselves")
    if not args.report:
        run_plan(args)
    return report(args)


if __name__ == "__main__":
    main()
