"""Runs of the recipe over seeds and their statistics (`python train.py --seeds N`).

One run's test accuracy is signal plus seed noise (a few tenths of a point for this recipe), so
the references report statistics over many runs: Page the median and the pass rate over 50 runs
("35 of 50 reached 94%"), airbench the mean and standard deviation over 25 runs or more,
hlb-CIFAR10 mean, std, min and max. `run_seeds` runs the series, each run in its own folder, and
`summarize` turns the runs' records (their metrics.json) into those numbers, in
`<out_dir>/summary.json`.
"""
import dataclasses
import json
import os
import statistics

import checkpoint
import utils
from utils import Diverged, Interrupted, UsageError

PASS_THRESHOLDS = (93, 94)    # test accuracy, %: pass rates as Page reports them


# ==============================================================================================
# Statistics

def describe(values) -> dict:
    """n, mean, std, min, max and median of a list of numbers.

    std is the SAMPLE standard deviation (divides by n - 1), the estimate of the spread of the
    recipe's runs that airbench prints (torch.std) and that a t-test between two recipes uses;
    None for fewer than two values. The median of an even count is the mean of the middle two.
    """
    if not values:
        return {"n": 0, "mean": None, "std": None, "min": None, "max": None, "median": None}
    return {"n": len(values), "mean": statistics.fmean(values),
            "std": statistics.stdev(values) if len(values) > 1 else None,
            "min": min(values), "max": max(values), "median": statistics.median(values)}


def paired_difference(a: dict, b: dict) -> dict:
    """Two recipes run with the same seeds: a and b map seed -> accuracy. Over the seeds both
    have: the statistics of each (describe), and of the per-seed differences a - b, with the
    standard error of their mean, std(differences) / sqrt(n) (None for fewer than two pairs).

    Paired by seed, the seed's own luck (initial weights, data order) cancels, so the
    difference is measured more precisely than by comparing two independent means."""
    seeds = sorted(set(a) & set(b))
    diffs = [a[s] - b[s] for s in seeds]
    return {"seeds": seeds, "a": describe([a[s] for s in seeds]), "b": describe([b[s] for s in seeds]),
            "diffs": diffs, "diff_mean": statistics.fmean(diffs) if diffs else None,
            "diff_se": statistics.stdev(diffs) / len(diffs) ** 0.5 if len(diffs) > 1 else None}


def pass_rate(rows, threshold) -> dict:
    """How many runs reached `threshold` % test accuracy (at least, so 9300/10000 reaches 93).

    Compared on the integer counts (100 * correct >= threshold * n), so no rounding of a
    percentage decides a run at the boundary. Every run counts in the denominator: a diverged
    run is a run of the recipe that failed.
    """
    passed = sum(1 for r in rows if r["status"] == "complete"
                 and 100 * r["test_correct"] >= threshold * r["test_n"])
    return {"threshold": threshold, "passed": passed, "runs": len(rows),
            "rate": passed / len(rows) if rows else None}


def run_row(record, seed, out_dir) -> dict:
    """The line of the summary for one run, from its record (its metrics.json)."""
    timings, rt = record.get("timings", {}), record.get("runtime", {})
    complete = record["status"] == "complete"
    return {"seed": seed, "out_dir": out_dir, "status": record["status"],
            "test_accuracy": record["test_accuracy"] if complete else None,
            "test_correct": record["test_correct"] if complete else None,
            "test_n": record["data"]["test_images"],
            "eval_split": record["data"].get("eval_split", "test"),   # what "test" means here (data.py)
            "data_source": record["data"].get("source", "cifar10"),
            "lr_min": record.get("lr_min"), "lr_max": record.get("lr_max"), "lr_source": record.get("lr_source"),
            "train_seconds": timings.get("train_seconds"), "lr_test_seconds": timings.get("lr_test_seconds"),
            "images_per_second": timings.get("images_per_second"),
            "device": rt.get("device"), "precision": rt.get("precision"),
            "hardware": rt.get("gpu", rt.get("cpu")), "torch": rt.get("torch"),
            "git_commit": (record.get("code") or {}).get("git_commit")}


def summarize(rows, seeds, config, code) -> dict:
    """The content of summary.json: the runs finished so far (`rows`, in seed order) of the
    planned `seeds`, their statistics, and what produced them."""
    done = [r for r in rows if r["status"] == "complete"]
    hardware = []
    for r in rows:
        hw = {k: r[k] for k in ("device", "precision", "hardware", "torch")}
        if hw not in hardware:
            hardware.append(hw)
    return {
        "status": "complete" if len(rows) == len(seeds) else "partial",
        "seeds": list(seeds), "runs_finished": len(rows), "runs_diverged": len(rows) - len(done),
        "test_accuracy": describe([r["test_accuracy"] for r in done]),
        # "test", or "validation" when the runs evaluated on a validation split (data.py)
        "eval_split": "/".join(sorted({r.get("eval_split", "test") for r in rows})) or "test",
        "data_source": "/".join(sorted({r.get("data_source", "cifar10") for r in rows})) or "cifar10",
        "pass_rates": [pass_rate(rows, t) for t in PASS_THRESHOLDS],
        "std_kind": "sample standard deviation (divided by n - 1)",
        "lr_max": describe([r["lr_max"] for r in rows if r["lr_max"] is not None]),
        "lr_min": describe([r["lr_min"] for r in rows if r["lr_min"] is not None]),
        "train_seconds": describe([r["train_seconds"] for r in done if r["train_seconds"] is not None]),
        "hardware": hardware,               # one entry unless the runs ran on different machines
        "code": code,                       # the code that wrote this summary
        "git_commits_of_runs": sorted({str(r["git_commit"]) for r in rows}),
        "config": config,                   # the series' settings; each run's seed is its own
        "runs": rows,
    }


# ==============================================================================================
# The printed table and the picture

def _num(x, fmt):
    return "-" if x is None else format(x, fmt)


def format_table(summary) -> str:
    """The summary as text: one line per run, then the statistics and the pass rates."""
    split = label(summary)
    head = {"test": "test acc", "validation": "val acc"}.get(summary.get("eval_split", "test"), "acc")
    lines = [f"{'seed':>6} {head:>9} {'correct':>12} {'LRMIN':>9} {'LRMAX':>9} {'train s':>8}  status"]
    for r in summary["runs"]:
        correct = "-" if r["test_correct"] is None else f"{r['test_correct']}/{r['test_n']}"
        lines.append(f"{r['seed']:>6} {_num(r['test_accuracy'], '8.2f')}% {correct:>12} "
                     f"{_num(r['lr_min'], '9.4g')} {_num(r['lr_max'], '9.4g')} "
                     f"{_num(r['train_seconds'], '8.1f')}  {r['status']}")
    a = summary["test_accuracy"]
    lines.append(f"{split} accuracy over {a['n']} complete run(s) of {len(summary['seeds'])} planned: "
                 + (f"mean {a['mean']:.2f}%, std {_num(a['std'], '.2f')} (sample), min {a['min']:.2f}%, "
                    f"median {a['median']:.2f}%, max {a['max']:.2f}%" if a["n"] else "none"))
    lines.append("; ".join(f"reached {p['threshold']}%: {p['passed']}/{p['runs']}"
                           + (f" ({100 * p['rate']:.0f}%)" if p["runs"] else "") for p in summary["pass_rates"]))
    if summary["runs_diverged"]:
        lines.append(f"{summary['runs_diverged']} run(s) diverged: counted as failures in the pass rates")
    hw = summary["hardware"]
    lines.append("on " + "; ".join(f"{h['device']} ({h['hardware']}), {h['precision']}, torch {h['torch']}"
                                   for h in hw) + f"; code {summary['code']['git_commit'] or 'not in git'}"
                 + (" with uncommitted changes" if summary["code"]["git_dirty"] else ""))
    return "\n".join(lines)


def label(summary) -> str:
    """What the runs evaluated on: "test", "validation", or "synthetic test"."""
    split = summary.get("eval_split", "test")
    return f"synthetic {split}" if summary.get("data_source") == "synthetic" else split


def markdown(summary, out_dir) -> str:
    """The series' report, README.md in its folder: the statistics, the pass rates and a line
    per run linking to that run's own report; every number from the summary."""
    a, name, num = summary["test_accuracy"], label(summary), _num
    lines = [f"# Custom ResNet on CIFAR-10: {a['n']} run(s) over seeds, {name} accuracy", ""]
    if summary.get("data_source") == "synthetic":
        lines += ["> **Synthetic data.** These numbers check that the pipeline runs; they say nothing about "
                  "accuracy on CIFAR-10.", ""]
    lines += [f"{summary['runs_finished']} of {len(summary['seeds'])} planned runs finished ({summary['status']}); "
              f"{summary['runs_diverged']} diverged.", "",
              "| statistic | value |", "|---|---:|"]
    lines += [f"| {k} | {num(a[k], '.2f')}{'' if a[k] is None else '%' if k != 'std' else ''} |"
              for k in ("mean", "std", "min", "median", "max")]
    lines += [f"| reached {p['threshold']}% | {p['passed']}/{p['runs']} |" for p in summary["pass_rates"]]
    lines += ["", f"std is the {summary['std_kind']}.", ""]
    if os.path.exists(os.path.join(out_dir, "accuracies.png")):
        lines += ["![accuracy of every run](accuracies.png)", ""]
    lines += ["| seed | accuracy | LRMIN | LRMAX | training s | status | report |", "|---:|---:|---:|---:|---:|---|---|"]
    for r in summary["runs"]:
        folder = os.path.relpath(r["out_dir"], out_dir)
        link = f"[{folder}/README.md]({folder}/README.md)" if os.path.exists(os.path.join(r["out_dir"], "README.md")) else "-"
        lines.append(f"| {r['seed']} | {num(r['test_accuracy'], '.2f')}% | {num(r['lr_min'], '.4g')} | "
                     f"{num(r['lr_max'], '.4g')} | {num(r['train_seconds'], '.1f')} | {r['status']} | {link} |")
    hw = "; ".join(f"{h['device']} ({h['hardware']}), {h['precision']}, torch {h['torch']}" for h in summary["hardware"])
    lines += ["", f"Hardware: {hw}. Code: {summary['code']['git_commit'] or 'not in git'}.", ""]
    return "\n".join(lines)


def plot_accuracies(summary, path=None):
    """The test accuracy of every run against its seed, the mean and the pass thresholds drawn,
    so a reader sees the spread and any outlier that the mean and std hide."""
    import plots
    done = [r for r in summary["runs"] if r["status"] == "complete"]
    split = label(summary)
    if not done:
        return plots.message_figure("No complete run yet", f"{split.capitalize()} accuracy per seed", path)
    fig = plots.new_figure((7, 3.5))
    ax = fig.add_subplot()
    ax.plot([r["seed"] for r in done], [r["test_accuracy"] for r in done], "o", label="one run")
    a = summary["test_accuracy"]
    ax.axhline(a["mean"], color="C1", label=f"mean {a['mean']:.2f}%")
    for t, style in zip(PASS_THRESHOLDS, (":", "--")):
        if a["min"] - 1 <= t <= a["max"] + 1:       # far-off lines would squash the points
            ax.axhline(t, color="gray", linestyle=style, linewidth=1, label=f"{t}%")
    ax.set_xlabel("seed")
    from matplotlib.ticker import MaxNLocator
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))        # seeds are whole numbers
    ax.set_ylabel(f"{split} accuracy (%)")
    std = "" if a["std"] is None else f", std {a['std']:.2f} (sample)"
    ax.set_title(f"{split.capitalize()} accuracy of {a['n']} run(s): median {a['median']:.2f}%{std}")
    ax.legend(fontsize=8, loc="best")
    return plots.save_figure(fig, path)


# ==============================================================================================
# The series: one run per seed, each in its own folder

def run_seeds(main, cfg) -> dict:
    """main() (train.main) for the seeds cfg.seed .. cfg.seed + cfg.seeds - 1, each run in
    <out_dir>/seed-<s>/ with its usual files and its own range test; then the statistics in
    <out_dir>/summary.json, a table on the screen and accuracies.png. Returns the summary.

    The summary is rewritten after every run, so an interrupted series leaves the finished runs'
    statistics. The same command continues it: a finished run (metrics.json complete, or
    diverged: a failure of the recipe that would repeat) is kept, an interrupted one continues
    from its last checkpoint, the rest run.
    """
    if cfg.resume:
        raise UsageError("--resume continues one run; to continue a series, run the same --seeds "
                         "command again (finished runs are kept)")
    if cfg.overwrite:
        raise UsageError("--overwrite starts one run over; a series keeps its finished runs: to start a series "
                         "over, give another --out-dir or delete its folder")
    held = checkpoint.holds_run(cfg.out_dir)
    if held and not held.startswith("a series"):
        raise UsageError(f"{cfg.out_dir} already holds {held}. Nothing was changed: give the series another --out-dir")
    utils.ensure_writable_dir(cfg.out_dir)
    seeds = range(cfg.seed, cfg.seed + cfg.seeds)
    config, code, rows = dataclasses.asdict(cfg), utils.code_version(), []
    for seed in seeds:
        folder = os.path.join(cfg.out_dir, f"seed-{seed}")
        run_cfg = dataclasses.replace(cfg, seeds=1, seed=seed, out_dir=folder)
        record = earlier_run(folder, run_cfg)
        if record and record["status"] in ("complete", "diverged"):
            print(f"=== seed {seed}: kept the finished run in {folder} ({record['status']})")
        else:
            print(f"=== seed {seed} (run {len(rows) + 1} of {len(seeds)}) in {folder}")
            record = run_in_series(main, run_cfg, record, f"{len(rows)} of {len(seeds)}")
        rows.append(run_row(record, seed, folder))
        summary = summarize(rows, seeds, config, code)
        utils.atomic_write_json(summary, os.path.join(cfg.out_dir, "summary.json"))
    if cfg.plots:
        plot_accuracies(summary, os.path.join(cfg.out_dir, "accuracies.png"))
    utils.atomic_write_text(markdown(summary, cfg.out_dir), os.path.join(cfg.out_dir, "README.md"))
    print(format_table(summary))
    return summary


def earlier_run(folder, cfg):
    """The record in folder/metrics.json (None if there is none), after checking that it was made
    with the settings cfg (a train.Config) asks for: a series must not mix runs of two recipes."""
    path = os.path.join(folder, "metrics.json")
    if not os.path.isfile(path):
        return None
    try:
        with open(path) as f:
            record = json.load(f)
        if not isinstance(record, dict) or not isinstance(record.get("config"), dict) or "status" not in record:
            raise ValueError("no status or config")
    except (OSError, ValueError) as e:
        raise UsageError(f"{path}: not a readable record of a run ({utils.first_line(e)}): delete {folder} to run "
                         "that seed again, or give another --out-dir") from None
    clash = cfg.differs_from(record["config"])
    if clash:
        k, have, want = clash
        raise UsageError(f"{folder} holds a run made with {k}={have!r}, but this series asks for "
                         f"{k}={want!r}: give another --out-dir, or delete {folder} to run it again")
    return record


def run_in_series(main, cfg, record, finished):
    """One run of the series: continued from its checkpoint when an earlier attempt left one.
    A diverged run is returned as such (its metrics.json says so); Ctrl-C stops the series."""
    overrides = dataclasses.asdict(cfg)
    checkpoint = os.path.join(cfg.out_dir, "checkpoint.pt")
    if record and os.path.isfile(checkpoint):
        # Every setting passed on: a resumed run refuses one the checkpoint was not made with.
        overrides["resume"] = checkpoint
    try:
        return main(**overrides)
    except Diverged as e:
        print(f"this run diverged and counts as a failure of the recipe: {e}")
        with open(os.path.join(cfg.out_dir, "metrics.json")) as f:
            return json.load(f)
    except (Interrupted, KeyboardInterrupt) as e:
        stop = type(e) if isinstance(e, Interrupted) else Interrupted          # SIGTERM keeps its status
        raise stop(f"interrupted; {finished} runs of the series were finished and are kept. Run the same "
                   "command again to continue (this run from its last checkpoint, if it has one)") from None
