"""Series of runs of the recipe, over seeds and a grid of settings, and their statistics.

    python train.py --seeds 5                                          # seeds 0..4
    python train.py --seeds 5 --sweep lr_max=0.1,0.2,0.4 --sweep label_smoothing=0,0.2   # 6 points x 5 seeds
    torchrun --nproc-per-node=4 train.py --seeds 5 --sweep ...         # the same runs over 4 GPUs

One run's test accuracy is signal plus seed noise (a few tenths of a point for this recipe), so
the references report statistics over many runs: Page the median and the pass rate over 50 runs
("35 of 50 reached 94%"), airbench the mean and standard deviation over 25 runs or more,
hlb-CIFAR10 mean, std, min and max. `run_series` runs the series, each run in its own folder
(<out_dir>/seed-<s>/, or <out_dir>/<point>/seed-<s>/ for a point of a sweep), in one process or
spread over torchrun's (cluster.py), and `summarize` turns the runs' records (their metrics.json)
into those numbers, in `<out_dir>/summary.json`, with a table per point of a sweep.
"""
import dataclasses
import itertools
import json
import math
import os
import statistics
from typing import Optional

import checkpoint
import cluster
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


def run_row(record, seed, out_dir, point="") -> dict:
    """The line of the summary for one run, from its record (its metrics.json); `point`: the
    folder of its point of a sweep ("" in a series over seeds alone)."""
    timings, rt = record.get("timings", {}), record.get("runtime") or {}
    complete = record["status"] == "complete"
    return {"seed": seed, "point": point, "out_dir": out_dir, "status": record["status"],
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


def summarize(rows, seeds, config, code, points=()) -> dict:
    """The content of summary.json: the runs finished so far (`rows`, in the plan's order) of the
    planned `seeds` (times the `points` of a sweep, each a dict of settings), their statistics,
    a table per point (point_table), and what produced them."""
    done = [r for r in rows if r["status"] == "complete"]
    planned = len(seeds) * max(1, len(points))
    hardware = []
    for r in rows:
        hw = {k: r[k] for k in ("device", "precision", "hardware", "torch")}
        if hw not in hardware:
            hardware.append(hw)
    return {
        "status": "complete" if len(rows) == planned else "partial",
        "seeds": list(seeds), "runs_planned": planned, "runs_finished": len(rows), "runs_diverged": len(rows) - len(done),
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
        **({"points": point_table(rows, points)} if points else {}),
        "runs": rows,
    }


def point_table(rows, points) -> list:
    """A line per point of a sweep, sorted by mean accuracy (best first; points with no
    complete run last): its settings, the statistics of its complete runs (describe), how many
    finished and diverged, and its paired difference by seed with the sweep's first point
    (paired_difference: mean and standard error), the baseline a grid is usually written from."""
    def accuracies(name):
        return {r["seed"]: r["test_accuracy"] for r in rows if r["point"] == name and r["status"] == "complete"}
    first_name = point_name(points[0])
    first = accuracies(first_name)
    table = []
    for settings in points:
        name = point_name(settings)
        acc, mine = accuracies(name), [r for r in rows if r["point"] == name]
        p = paired_difference(acc, first)
        table.append({"point": name, "settings": settings, "test_accuracy": describe(list(acc.values())),
                      "runs_finished": len(mine), "runs_diverged": len(mine) - len(acc),
                      "minus_first": None if name == first_name else
                      {"pairs": len(p["seeds"]), "mean": p["diff_mean"], "se": p["diff_se"]}})
    return sorted(table, key=lambda t: (t["test_accuracy"]["mean"] is None, -(t["test_accuracy"]["mean"] or 0)))


# ==============================================================================================
# The printed table and the picture

def _num(x, fmt):
    return "-" if x is None else format(x, fmt)


def format_table(summary) -> str:
    """The summary as text: one line per run, then the statistics (a line per point of a sweep)
    and the pass rates."""
    split = label(summary)
    head = {"test": "test acc", "validation": "val acc"}.get(summary.get("eval_split", "test"), "acc")
    width = max([len(r["point"]) for r in summary["runs"]] + [5]) if summary.get("points") else 0
    lines = [(f"{'point':<{width}} " if width else "")
             + f"{'seed':>6} {head:>9} {'correct':>12} {'LRMIN':>9} {'LRMAX':>9} {'train s':>8}  status"]
    for r in summary["runs"]:
        correct = "-" if r["test_correct"] is None else f"{r['test_correct']}/{r['test_n']}"
        lines.append((f"{r['point']:<{width}} " if width else "")
                     + f"{r['seed']:>6} {_num(r['test_accuracy'], '.2f') + ('%' if r['test_accuracy'] is not None else ''):>9} "
                     f"{correct:>12} {_num(r['lr_min'], '.4g'):>9} {_num(r['lr_max'], '.4g'):>9} "
                     f"{_num(r['train_seconds'], '.1f'):>8}  {r['status']}")
    if summary.get("points"):
        lines.append(f"{split} accuracy per point, best mean first ({summary['runs_finished']} of "
                     f"{summary['runs_planned']} planned runs finished; std: sample):")
        lines.append(f"{'point':<{width}} {'n':>3} {'mean':>7} {'std':>5} {'min':>7} {'max':>7} {'diverged':>8}"
                     "  minus the first point, paired by seed")
        for p in summary["points"]:
            a = p["test_accuracy"]
            lines.append(f"{p['point']:<{width}} {a['n']:>3} {_num(a['mean'], '7.2f')} {_num(a['std'], '5.2f')} "
                         f"{_num(a['min'], '7.2f')} {_num(a['max'], '7.2f')} {p['runs_diverged']:>8}  {difference(p)}")
    else:
        a = summary["test_accuracy"]
        lines.append(f"{split} accuracy over {a['n']} complete run(s) of {summary['runs_planned']} planned: "
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


def difference(point) -> str:
    """A point's paired difference with the first point, in words: "+0.40 ± 0.20 (3 pairs)"."""
    d = point["minus_first"]
    if d is None:
        return "(the first point)"
    if not d["pairs"]:
        return "-"
    return f"{d['mean']:+.2f}" + (f" ± {d['se']:.2f}" if d["se"] is not None else "") + f" ({d['pairs']} pairs)"


def label(summary) -> str:
    """What the runs evaluated on: "test", "validation", or "synthetic test"."""
    split = summary.get("eval_split", "test")
    return f"synthetic {split}" if summary.get("data_source") == "synthetic" else split


def markdown(summary, out_dir) -> str:
    """The series' report, README.md in its folder: the statistics (a table of the points of a
    sweep, best mean first), the pass rates and a line per run linking to that run's own report;
    every number from the summary."""
    a, name, num = summary["test_accuracy"], label(summary), _num
    points = summary.get("points")
    what = f"{len(points)} settings x {len(summary['seeds'])} seed(s)" if points else f"{a['n']} run(s) over seeds"
    lines = [f"# Custom ResNet on CIFAR-10: {what}, {name} accuracy", ""]
    if summary.get("data_source") == "synthetic":
        lines += ["> **Synthetic data.** These numbers check that the pipeline runs; they say nothing about "
                  "accuracy on CIFAR-10.", ""]
    lines += [f"{summary['runs_finished']} of {summary['runs_planned']} planned runs finished ({summary['status']}); "
              f"{summary['runs_diverged']} diverged.", ""]
    if points:
        lines += ["| point | n | mean | std | min | max | diverged | minus the first point, paired by seed |",
                  "|---|---:|---:|---:|---:|---:|---:|---|"]
        lines += [f"| `{p['point']}` | {p['test_accuracy']['n']} | {num(p['test_accuracy']['mean'], '.2f')} | "
                  f"{num(p['test_accuracy']['std'], '.2f')} | {num(p['test_accuracy']['min'], '.2f')} | "
                  f"{num(p['test_accuracy']['max'], '.2f')} | {p['runs_diverged']} | {difference(p)} |" for p in points]
        lines += ["", f"Accuracies in %, best mean first; std is the {summary['std_kind']}.", ""]
    else:
        lines += ["| statistic | value |", "|---|---:|"]
        lines += [f"| {k} | {num(a[k], '.2f')}{'' if a[k] is None else '%' if k != 'std' else ''} |"
                  for k in ("mean", "std", "min", "median", "max")]
        lines += [f"| reached {p['threshold']}% | {p['passed']}/{p['runs']} |" for p in summary["pass_rates"]]
        lines += ["", f"std is the {summary['std_kind']}.", ""]
    if os.path.exists(os.path.join(out_dir, "accuracies.png")):
        lines += ["![accuracy of every run](accuracies.png)", ""]
    lines += [("| point " if points else "") + "| seed | accuracy | LRMIN | LRMAX | training s | status | report |",
              ("|---" if points else "") + "|---:|---:|---:|---:|---:|---|---|"]
    for r in summary["runs"]:
        folder = os.path.relpath(r["out_dir"], out_dir)
        link = f"[{folder}/README.md]({folder}/README.md)" if os.path.exists(os.path.join(r["out_dir"], "README.md")) else "-"
        lines.append((f"| `{r['point']}` " if points else "")
                     + f"| {r['seed']} | {num(r['test_accuracy'], '.2f')}% | {num(r['lr_min'], '.4g')} | "
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
    if summary.get("points"):
        return plot_points(summary, done, path)
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


def plot_points(summary, done, path=None):
    """A sweep: every run's accuracy above its point (best mean on the left), each point's mean
    a bar, so the grid's spread between points is seen against the spread between seeds."""
    import plots
    points = summary["points"]
    fig = plots.new_figure((max(6, 1.2 * len(points) + 2), 4.5))
    ax = fig.add_subplot()
    for x, p in enumerate(points):
        ys = [r["test_accuracy"] for r in done if r["point"] == p["point"]]
        ax.plot([x] * len(ys), ys, "o", color="C0", alpha=0.7, label="one run" if x == 0 else None)
        if p["test_accuracy"]["mean"] is not None:
            ax.hlines(p["test_accuracy"]["mean"], x - 0.3, x + 0.3, color="C1", label="mean" if x == 0 else None)
    ax.set_xticks(range(len(points)), [p["point"].replace(",", "\n") for p in points], fontsize=7)
    ax.set_ylabel(f"{label(summary)} accuracy (%)")
    ax.set_title(f"{label(summary).capitalize()} accuracy of {len(done)} run(s) over {len(points)} settings, "
                 "best mean first")
    ax.legend(fontsize=8, loc="best")
    return plots.save_figure(fig, path)


# ==============================================================================================
# The plan: a grid of settings (--sweep) times the seeds, one folder a run

# What the series itself decides for each of its runs: never swept.
NOT_SWEPT = ("seed", "seeds", "sweep", "out_dir", "resume", "overwrite", "device")
TRUE, FALSE = ("true", "on", "yes", "1"), ("false", "off", "no", "0")


@dataclasses.dataclass
class PlannedRun:
    point: str            # the folder of its point of the grid, named for its settings ("" without --sweep)
    settings: dict        # the point's settings ({} without --sweep)
    seed: int
    folder: str           # <out_dir>[/<point>]/seed-<seed>
    cfg: object           # its train.Config: the series' settings, the point's, its seed and folder

    @property
    def name(self) -> str:
        """Its folder under out_dir: seed-<s>, or <point>/seed-<s>."""
        return os.path.join(self.point, f"seed-{self.seed}")

    @property
    def title(self) -> str:
        return f"{self.point} seed {self.seed}" if self.point else f"seed {self.seed}"


def parse_sweep(text, config_class) -> list:
    """The points of a sweep, in order: "lr_max=0.1,0.2 label_smoothing=0,0.2" (one setting
    and its values per word; a --sweep flag each on the command line) -> the grid of every
    combination, the first setting varying slowest: [{"lr_max": 0.1, "label_smoothing": 0.0},
    {"lr_max": 0.1, "label_smoothing": 0.2}, {"lr_max": 0.2, ...}, ...]. Values are read as the
    setting's type (a switch: true/false; an LR: a number or none). UsageError naming the mistake."""
    fields = {f.name: f for f in dataclasses.fields(config_class)}
    axes = {}
    for word in text.split():
        name, _, values = word.partition("=")
        if "=" not in word:
            raise UsageError(f"--sweep {word}: not NAME=VALUE,VALUE,... (no spaces inside one --sweep: "
                             "--sweep lr_max=0.1,0.2)")
        if name not in fields or name in NOT_SWEPT:
            why = ("a series sets it for each run" if name in NOT_SWEPT else
                   "valid settings: " + ", ".join(k for k in fields if k not in NOT_SWEPT))
            raise UsageError(f"--sweep {word}: {name!r} cannot be swept ({why})")
        if name in axes:
            raise UsageError(f"--sweep {word}: {name} is swept twice; give all its values in one --sweep")
        if not values:
            raise UsageError(f"--sweep {word}: no values; write it as {name}=VALUE,VALUE,...")
        if "" in values.split(","):
            raise UsageError(f"--sweep {word}: an empty value (no spaces inside one --sweep: --sweep {name}=V1,V2)")
        typed = [sweep_value(name, fields[name].type, v) for v in values.split(",")]
        if len(set(typed)) < len(typed):                  # by value: 0.1 and 0.10, 0.0 and -0.0
            raise UsageError(f"--sweep {word}: a value is repeated")
        axes[name] = typed
    return [dict(zip(axes, combination)) for combination in itertools.product(*axes.values())]


def sweep_value(name, kind, text):
    """One value of a swept setting, read as train.Config's field type says."""
    try:
        if kind is bool:
            if text.lower() not in TRUE + FALSE:
                raise ValueError
            return text.lower() in TRUE
        if kind is int:
            return int(text)
        if kind in (float, Optional[float]):
            if kind is not float and text.lower() == "none":
                return None                       # LRs: found by the range test; peak_epoch: 5/24
            value = float(text)
            if not math.isfinite(value):
                raise ValueError
            return value
        return text
    except ValueError:
        want = {bool: "true or false", int: "a whole number", float: "a number"}.get(kind, "a number or none")
        raise UsageError(f"--sweep {name}=...: {text!r} is not a value of {name} ({want})") from None


def point_name(settings: dict) -> str:
    """A point's folder: its settings as --sweep writes them, in alphabetical order (so the order
    of the --sweep flags does not matter), "label_smoothing=0.0,lr_max=0.1"; "default" for a point
    that changes nothing (a list of points with the recipe as its baseline)."""
    def text(v):
        return "none" if v is None else str(v).lower() if isinstance(v, bool) else repr(v) if isinstance(v, float) \
            else str(v).replace(os.sep, "-")
    return ",".join(f"{k}={text(v)}" for k, v in sorted(settings.items())) or "default"


def plan(cfg, config_class, points=None) -> list:
    """Every run of the series, each with its train.Config, checked now: the points of cfg.sweep,
    or the given `points` (a list of dicts of settings: the arms of an experiment), or one point,
    the settings as given; times the seeds cfg.seed .. cfg.seed + cfg.seeds - 1."""
    base = cfg.keywords()         # what was asked for; peak_epoch only if given (else 5/24 of each point's epochs)
    if points is None and cfg.sweep:
        points = parse_sweep(cfg.sweep, config_class)
        both = sorted(set(points[0]) & set(base))
        if both:
            raise UsageError(f"{both[0]} is given (--{both[0].replace('_', '-')} {base[both[0]]}) and swept "
                             f"(--sweep {both[0]}=...): give it one way")
    runs = []
    for settings in points or [{}]:
        point = point_name(settings) if points else ""
        for seed in range(cfg.seed, cfg.seed + cfg.seeds):
            folder = os.path.join(cfg.out_dir, point, f"seed-{seed}") if point else os.path.join(cfg.out_dir, f"seed-{seed}")
            try:
                run_cfg = config_class.from_keywords({**base, **settings, "seed": seed, "seeds": 1, "sweep": "",
                                                      "out_dir": folder})
            except UsageError as e:
                raise UsageError(f"--sweep point {point}: {e}") from None
            runs.append(PlannedRun(point, settings, seed, folder, run_cfg))
    if len({r.folder for r in runs}) < len(runs):
        raise UsageError(f"--sweep {cfg.sweep}: two points would share a folder; give values that differ in writing")
    return runs


# ==============================================================================================
# The series: its runs in one process, or spread over torchrun's processes (cluster.py)

def run_series(cfg, config_class, train, points=None) -> dict:
    """Every run of plan(cfg, config_class, points), each by train(run_cfg, checkpoint or None)
    in its own folder with its usual files and its own range test; then the statistics in
    <out_dir>/summary.json (a table per point of a sweep), a table on the screen, accuracies.png
    and README.md. Returns the summary.

    The runs go seed by seed (every point's seed 0, then every point's seed 1, ...), so a series
    cut short stays balanced between points. In one process they go in that order; under torchrun
    each process claims the next run from the store (cluster.claims) until none is left, and rank 0
    writes the report once every process has ended. summary.json is rewritten after every run
    from the runs' own records (by the process that ran it: while the series runs it may lag a
    run behind another process's), so an interrupted series leaves the finished runs'
    statistics; the same command continues it: a
    finished run (metrics.json complete, or diverged: a failure of the recipe that would repeat)
    is kept, an interrupted one continues from its last checkpoint, the rest run.
    """
    if cfg.resume:
        raise UsageError("--resume continues one run; to continue a series, run the same command again "
                         "(finished runs are kept)")
    if cfg.overwrite:
        raise UsageError("--overwrite starts one run over; a series keeps its finished runs: to start a series "
                         "over, give another --out-dir or delete its folder")
    runs = plan(cfg, config_class, points)
    proc = cluster.join() if cluster.launched() else None
    if proc is not None and len(runs) == 1 and not runs[0].point:
        raise UsageError(f"torchrun started {proc.world_size} processes for one run, and one run stays on one "
                         "device: give --seeds N or --sweep to spread a series over them, or run python train.py")
    held = checkpoint.holds_run(cfg.out_dir)
    if held and not held.startswith("a series"):
        raise UsageError(f"{cfg.out_dir} already holds {held}. Nothing was changed: give the series another --out-dir")
    known = {}                               # folder -> summary line of its finished run
    finished_rows(runs, known)               # every folder's earlier run checked before any run starts
    if proc is not None:
        runs = on_this_process(proc, runs)
    utils.ensure_writable_dir(cfg.out_dir)
    if proc is not None:
        cluster.check_shared_folder(proc, cfg.out_dir)
    config, code = dataclasses.asdict(cfg), utils.code_version()
    seeds, points = range(cfg.seed, cfg.seed + cfg.seeds), [r.settings for r in runs[::cfg.seeds]] if runs[0].point else []
    trained, kept = [], []

    def write_summary():                     # from the records on disk, whoever trained the runs
        summary = summarize(finished_rows(runs, known), seeds, config, code, points)
        utils.atomic_write_json(summary, os.path.join(cfg.out_dir, "summary.json"))
        return summary
    if proc is None or proc.rank == 0:       # at once: the folder holds a series from its first run on
        write_summary()
    order = sorted(range(len(runs)), key=lambda i: (runs[i].seed, i))       # seed by seed
    for i in cluster.claims(proc, len(runs)):
        run = runs[order[i]]
        record = earlier_run(run.folder, run.cfg)
        if record and record["status"] in ("complete", "diverged"):
            print(f"=== {run.title}: kept the finished run in {run.folder} ({record['status']})")
            kept.append(run.name)
        else:
            print(f"=== {run.title} (run {i + 1} of {len(runs)}) in {run.folder}" + (f" on {proc.name}" if proc else ""))
            run_in_series(train, config_class, run.cfg, record, lambda: f"{len(finished_rows(runs, known))} of {len(runs)}")
            trained.append(run.name)
        write_summary()
    if proc is not None:
        print(f"{proc.name} trained {len(trained)} run(s): {', '.join(trained) or 'none'}"
              + (f"; kept {len(kept)} finished: {', '.join(kept)}" if kept else "")
              + ("" if trained or kept else f" (no run left to claim: {len(runs)} runs for {proc.world_size} processes)"),
              flush=True)
        proc.wait_for_all("ended")
    if proc is not None and proc.rank != 0:
        return summarize(finished_rows(runs, known), seeds, config, code, points)     # rank 0 writes it
    summary = write_summary()
    if cfg.plots:
        plot_accuracies(summary, os.path.join(cfg.out_dir, "accuracies.png"))
    utils.atomic_write_text(markdown(summary, cfg.out_dir), os.path.join(cfg.out_dir, "README.md"))
    print(format_table(summary))
    return summary


def on_this_process(proc, runs) -> list:
    """The runs with this process's device (its GPU, or the CPU with its share of the cores),
    said in one line; refused before any run when the machine lacks the devices. No progress bar
    where several processes share this machine's terminal."""
    device = cluster.device_for(proc, runs[0].cfg.device)
    where = device
    if device == "cpu":
        n = proc.local_world_size
        where = f"cpu, {cluster.split_threads(proc)} thread(s)" + (f" ({n} processes share this machine's cores)"
                                                                     if n > 1 else " (this machine's cores)")
    # Several processes' progress bars on one terminal overwrite each other: the course's line
    # once an epoch instead (progress, like device, is a setting a resumed run may change).
    progress = runs[0].cfg.progress and proc.local_world_size == 1
    print(f"{proc.name}: {where}" + ("" if progress == runs[0].cfg.progress else "; no progress bar, a line an epoch"),
          flush=True)
    return [dataclasses.replace(r, cfg=dataclasses.replace(r.cfg, device=device, progress=progress)) for r in runs]


def finished_rows(runs, known) -> list:
    """The summary's lines of the finished runs (complete or diverged), in the plan's order,
    from their records on disk: the same whichever process trained them. `known` maps a folder
    to its line once its run has finished (a finished record never changes), so a series reads
    each finished record once, not once per run after it."""
    for run in runs:
        if run.folder not in known:
            record = earlier_run(run.folder, run.cfg)
            if record and record["status"] in ("complete", "diverged"):
                known[run.folder] = run_row(record, run.seed, run.folder, run.point)
    return [known[run.folder] for run in runs if run.folder in known]


def earlier_run(folder, cfg):
    """The record in folder/metrics.json (None if there is none), read back checked field by
    field (checkpoint.read_record: an edited or damaged record is one line naming the field),
    and made with the settings cfg (a train.Config) asks for: a series must not mix runs of two
    recipes."""
    path = os.path.join(folder, "metrics.json")
    if not os.path.isfile(path):
        return None
    record = checkpoint.read_record(path, f"delete {folder} to run that run again, or give another --out-dir")
    clash = cfg.differs_from(record["config"])
    if clash:
        k, have, want = clash
        raise UsageError(f"{folder} holds a run made with {k}={have!r}, but this series asks for "
                         f"{k}={want!r}: give another --out-dir, or delete {folder} to run it again")
    return record


def run_in_series(train, config_class, cfg, record, finished):
    """One run of the series: continued from its checkpoint when an earlier attempt left one.
    A diverged run is returned as such (its metrics.json says so); Ctrl-C stops the series, saying
    how many runs had finished (finished(), in words)."""
    overrides = dataclasses.asdict(cfg)
    path = os.path.join(cfg.out_dir, "checkpoint.pt")
    if record and os.path.isfile(path):
        # Every setting passed on: a resumed run refuses one the checkpoint was not made with.
        overrides["resume"] = path
    try:
        return train(*config_class.for_run(overrides))
    except Diverged as e:
        print(f"this run diverged and counts as a failure of the recipe: {e}")
        with open(os.path.join(cfg.out_dir, "metrics.json")) as f:
            return json.load(f)
    except (Interrupted, KeyboardInterrupt) as e:
        stop = type(e) if isinstance(e, Interrupted) else Interrupted          # SIGTERM keeps its status
        raise stop(f"interrupted; {finished()} runs of the series were finished and are kept. Run the same "
                   "command again to continue (this run from its last checkpoint, if it has one)") from None
