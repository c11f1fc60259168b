"""series.py: a series of runs over seeds (train.py --seeds N): its statistics against hand
computation, the series end to end, its resume after an interruption, and the mistakes it refuses."""
import json
import math
import re
import statistics

import pytest

import series
import settings
import train
from conftest import cli_flags
from utils import Interrupted, UsageError

# 2 steps per epoch, a 4-step range test: each run takes a few seconds on a CPU.
TINY = dict(synthetic=True, synthetic_train=128, synthetic_test=64, width=4, batch_size=64,
            eval_batch_size=64, epochs=2, lr_test_iters=4, precision="fp32", device="cpu",
            progress=False, plots=False)


def row(seed, correct, n=10000, status="complete", eval_split=None):
    data = {"test_images": n} if eval_split is None else {"test_images": n, "eval_split": eval_split}
    record = {"status": status, "data": data, "lr_min": 0.01 * (seed + 1), "lr_max": 0.1 * (seed + 1),
              "timings": {"train_seconds": 10.0 + seed},
              "runtime": {"device": "cpu", "precision": "fp32", "cpu": "a CPU", "torch": "2.x"},
              "code": {"git_commit": "abc", "git_dirty": False}}
    if status == "complete":
        record.update(test_correct=correct, test_accuracy=100 * correct / n)
    return series.run_row(record, seed, f"out/seed-{seed}")


# ------------------------------------------------------------------------------ the statistics
def test_statistics_match_hand_computation():
    # Accuracies 93.00, 94.10, 92.50, 93.90 % and one diverged run.
    rows = [row(0, 9300), row(1, 9410), row(2, 9250), row(3, 9390), row(4, None, status="diverged")]
    s = series.summarize(rows, range(5), config={"epochs": 24}, code={"git_commit": None, "git_dirty": None})
    a = s["test_accuracy"]
    assert a["n"] == 4                                          # the diverged run has no accuracy
    assert a["mean"] == pytest.approx(373.5 / 4)                # 93.00 + 94.10 + 92.50 + 93.90 = 373.5
    # Deviations from 93.375: -0.375, 0.725, -0.875, 0.525; their squares sum to 1.7075.
    assert a["std"] == pytest.approx(math.sqrt(1.7075 / 3))     # sample std: divided by n - 1 = 3
    assert a["std"] != pytest.approx(math.sqrt(1.7075 / 4))     # not the population std
    assert a["median"] == pytest.approx((93.00 + 93.90) / 2)    # even count: mean of the middle two
    assert (a["min"], a["max"]) == (pytest.approx(92.5), pytest.approx(94.1))
    # Pass rates over all 5 runs, the diverged one a failure; 9300/10000 reaches 93%.
    assert [(p["threshold"], p["passed"], p["runs"]) for p in s["pass_rates"]] == [(93, 3, 5), (94, 1, 5)]
    assert [p["rate"] for p in s["pass_rates"]] == [pytest.approx(0.6), pytest.approx(0.2)]
    assert s["runs_diverged"] == 1 and s["status"] == "complete"
    assert s["runs_finished"] == 5                       # the diverged run finished too: a failure
    assert s["train_seconds"]["mean"] == pytest.approx((10 + 11 + 12 + 13) / 4)   # complete runs only
    assert s["lr_max"]["median"] == pytest.approx(0.3) and s["lr_max"]["n"] == 5
    table = series.format_table(s)
    assert "mean 93.38%" in table and "median 93.45%" in table and "reached 93%: 3/5" in table
    assert "reached 94%: 1/5" in table and "1 run(s) diverged" in table


def test_a_series_on_a_validation_split_says_validation_not_test():
    """The table and accuracies.png name what the runs evaluated on (issue 10); records written
    before the split was recorded count as test runs."""
    code = {"git_commit": None, "git_dirty": None}
    s = series.summarize([row(0, 9012, eval_split="validation"), row(1, 8990, eval_split="validation")],
                         range(2), config={}, code=code)
    table = series.format_table(s)
    assert s["eval_split"] == "validation" and "validation accuracy over 2" in table and "val acc" in table
    assert "test acc" not in table
    fig = series.plot_accuracies(s)
    ax = fig.axes[0]
    assert ax.get_ylabel() == "validation accuracy (%)" and ax.get_title().startswith("Validation accuracy")
    old = series.summarize([row(0, 9012)], range(1), config={}, code=code)
    assert old["eval_split"] == "test" and "test accuracy over 1" in series.format_table(old)


def test_paired_difference_by_seed_against_hand_computation():
    p = series.paired_difference({0: 73.0, 1: 72.0, 2: 74.0, 3: 99.0}, {0: 70.0, 1: 70.0, 2: 70.0})
    assert p["seeds"] == [0, 1, 2] and p["diffs"] == [3.0, 2.0, 4.0]           # seed 3 has no pair
    assert p["diff_mean"] == pytest.approx(3.0) and p["diff_se"] == pytest.approx(1 / 3 ** 0.5)
    assert p["a"]["mean"] == pytest.approx(73.0) and p["b"]["std"] == 0.0
    assert series.paired_difference({0: 1.0}, {0: 0.5})["diff_se"] is None


def test_pass_rate_boundary_and_small_series():
    assert series.pass_rate([row(0, 9299)], 93)["passed"] == 0
    assert series.pass_rate([row(0, 9300)], 93)["passed"] == 1
    assert series.pass_rate([row(0, 929, n=1000), row(1, 930, n=1000)], 93)["passed"] == 1
    one = series.summarize([row(0, 9312)], range(3), config={}, code={"git_commit": None, "git_dirty": None})
    assert one["status"] == "partial" and one["runs_finished"] == 1
    assert one["test_accuracy"]["std"] is None and one["test_accuracy"]["median"] == pytest.approx(93.12)


def test_the_picture_shows_every_complete_run(tmp_path):
    rows = [row(0, 9300), row(1, 9410), row(2, None, status="diverged"), row(3, 9390)]
    s = series.summarize(rows, range(4), config={}, code={"git_commit": None, "git_dirty": None})
    fig = series.plot_accuracies(s, tmp_path / "accuracies.png")
    points = fig.axes[0].lines[0]
    assert list(points.get_xdata()) == [0, 1, 3]
    assert list(points.get_ydata()) == pytest.approx([93.0, 94.1, 93.9])
    assert (tmp_path / "accuracies.png").stat().st_size > 0


# ------------------------------------------------------------------- the series, end to end
def test_a_series_runs_each_seed_with_its_own_range_test_and_resumes_where_it_stopped(
        tmp_path, interrupt_in_epoch, capsys):
    out = tmp_path / "series"
    # Ctrl-C in epoch 2 of seed 1 (the 4th epoch of the series): seed 0 is finished, seed 1 has
    # the checkpoint of its epoch 1, seed 2 has not started.
    with interrupt_in_epoch(4), pytest.raises(Interrupted, match="1 of 3 runs"):
        train.main(**TINY, seeds=3, out_dir=str(out))
    partial = json.loads((out / "summary.json").read_text())
    assert partial["status"] == "partial" and [r["seed"] for r in partial["runs"]] == [0]
    first = (out / "seed-0" / "metrics.json")
    before = (first.read_bytes(), first.stat().st_mtime_ns)
    seed1_epoch1 = json.loads((out / "seed-1" / "metrics.json").read_text())["history"]
    assert len(seed1_epoch1) == 1
    capsys.readouterr()

    summary = train.main(**TINY, seeds=3, out_dir=str(out))
    # Seed 0 was not run again; seed 1 continued from its checkpoint; seed 2 started fresh.
    log = capsys.readouterr().out
    assert "=== seed 0: kept the finished run" in log
    assert f"resumed from {out / 'seed-1' / 'checkpoint.pt'} after epoch 1" in log
    assert log.count("resumed from") == 1 and log.count("LR range test: 4 steps, LR") == 1     # seed 2's own
    assert (first.read_bytes(), first.stat().st_mtime_ns) == before
    records = [json.loads((out / f"seed-{s}" / "metrics.json").read_text()) for s in range(3)]
    assert records[1]["history"][0] == seed1_epoch1[0]
    # Every run is complete, with its own seed and its own range test, and the summary quotes it.
    assert [r["status"] for r in records] == ["complete"] * 3
    assert [r["config"]["seed"] for r in records] == [0, 1, 2]
    assert all(r["lr_source"] == "range test" and len(r["lr_range_test"]["lrs"]) == 4 for r in records)
    assert len({r["lr_max"] for r in records}) > 1                  # found per run, not copied
    assert [r["test_accuracy"] for r in summary["runs"]] == [r["test_accuracy"] for r in records]
    assert [r["lr_max"] for r in summary["runs"]] == [r["lr_max"] for r in records]
    assert [r["train_seconds"] for r in summary["runs"]] == [r["timings"]["train_seconds"] for r in records]
    assert summary["test_accuracy"]["mean"] == pytest.approx(statistics.fmean(r["test_accuracy"] for r in records))
    assert summary["status"] == "complete" and summary["config"]["seeds"] == 3
    assert summary["hardware"] == [{"device": "cpu", "precision": "fp32", "hardware": records[0]["runtime"]["cpu"],
                                    "torch": records[0]["runtime"]["torch"]}]
    assert summary["runs"][0]["git_commit"] == records[0]["code"]["git_commit"]
    assert json.loads((out / "summary.json").read_text()) == summary
    assert "reached 93%: 0/3" in log                                 # the table is printed
    # The series' report links each run's own, and its numbers are the summary's.
    report = (out / "README.md").read_text()
    links = re.findall(r"\]\(([^)]+)\)", report)
    assert links == [f"seed-{s}/README.md" for s in range(3)] and all((out / link).exists() for link in links)
    assert f"| mean | {summary['test_accuracy']['mean']:.2f}% |" in report and "synthetic" in report.lower()
    for r in summary["runs"]:
        assert f"| {r['seed']} | {r['test_accuracy']:.2f}% | {r['lr_min']:.4g} | {r['lr_max']:.4g} |" in report

    # The same folder with another recipe is refused before anything runs or is overwritten.
    with pytest.raises(UsageError, match="epochs=2, but this series asks for epochs=3"):
        train.main(**{**TINY, "epochs": 3}, seeds=3, out_dir=str(out))
    assert (first.read_bytes(), first.stat().st_mtime_ns) == before


def test_a_diverged_run_is_a_failure_of_the_series_and_is_not_redone(tmp_path, capsys):
    out = tmp_path / "series"
    bad = {**TINY, "lr_min": 1e6, "lr_max": 1e7}               # given LRs that blow up at once
    summary = train.main(**bad, seeds=2, out_dir=str(out))
    assert [r["status"] for r in summary["runs"]] == ["diverged", "diverged"]
    assert summary["runs_finished"] == 2 and summary["runs_diverged"] == 2 and summary["status"] == "complete"
    assert summary["test_accuracy"]["n"] == 0 and summary["pass_rates"][0]["passed"] == 0
    assert summary["pass_rates"][0]["runs"] == 2
    capsys.readouterr()
    assert train.main(**bad, seeds=2, out_dir=str(out))["runs_diverged"] == 2
    log = capsys.readouterr().out
    assert log.count("kept the finished run") == 2 and "device cpu" not in log       # nothing ran again


@pytest.mark.parametrize("args, says", [
    (["--seeds", "0"], "seeds must be at least 1"),
    (["--seeds", "2", "--resume", "x/checkpoint.pt"], "to continue a series, run the same command again"),
])
def test_series_mistakes_are_one_line(args, says, tmp_path, capsys):
    assert settings.cli(train.main, train.Config, [*args, "--synthetic", "--out-dir", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and says in err and err.count("\n") == 1
    assert not (tmp_path / "o").exists()


def test_a_series_run_recorded_before_a_setting_existed_is_kept(tmp_path):
    """--seeds continues a series whose finished runs were recorded before a setting existed;
    a record made with another value of a setting is still refused."""
    cfg = train.Config.from_keywords({**TINY, "seed": 3})
    record = train.main(**TINY, seed=3, out_dir=str(tmp_path))
    old = {k: v for k, v in record["config"].items() if k not in ("ema_epochs", "cutout_inside", "bn_weight_decay")}
    metrics = tmp_path / "metrics.json"
    metrics.write_text(json.dumps({**record, "config": old}))
    assert series.earlier_run(tmp_path, cfg)["config"] == old
    metrics.write_text(json.dumps({**record, "config": {**old, "cutout_inside": True}}))
    with pytest.raises(UsageError, match="cutout_inside=True"):
        series.earlier_run(tmp_path, cfg)


@pytest.mark.parametrize("content, says", [("{not json", "not a readable record of a run"),
                                           ("[1, 2]", "not a record of a run as train.py writes it (a JSON list"),
                                           ('{"status": "complete"}', "not a record of a run as train.py writes it")])
def test_a_corrupt_record_in_a_series_is_one_line_naming_the_file(tmp_path, content, says, capsys):
    (tmp_path / "seed-0").mkdir()
    (tmp_path / "seed-0" / "metrics.json").write_text(content)
    code = settings.cli(train.main, train.Config, ["--synthetic", "--seeds", "2", "--out-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert f"{tmp_path / 'seed-0' / 'metrics.json'}: {says}" in err
    assert (tmp_path / "seed-0" / "metrics.json").read_text() == content


@pytest.mark.parametrize("field, value, says", [
    ("test_accuracy", "93.1", """its 'test_accuracy' is "93.1", not its last epoch's test_acc"""),
    ("test_correct", 70000, "its 'test_correct' is 70000, not its last epoch's test_correct"),
    ("lr_max", None, "its 'lr_max' is null, not a number >= lr_min"),
    ("status", "done", """its 'status' is "done", not one of running"""),
])
def test_a_kept_record_with_a_wrong_field_is_one_line_naming_it(tmp_path, field, value, says, capsys):
    """A finished run's metrics.json edited by hand (a string where a number belongs) stops the
    series before any run, naming the file and the field; nothing is changed."""
    out = tmp_path / "series"
    train.main(**TINY, seeds=1, sweep="lr_max=0.1", out_dir=str(out))
    metrics = out / "lr_max=0.1" / "seed-0" / "metrics.json"
    record = json.loads(metrics.read_text())
    record[field] = value
    metrics.write_text(json.dumps(record))
    capsys.readouterr()
    code = settings.cli(train.main, train.Config, [*cli_flags(TINY), "--sweep", "lr_max=0.1,0.2",
                                                   "--out-dir", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert f"error: {metrics}: not a record of a run as train.py writes it ({says}" in err
    assert not (out / "lr_max=0.2").exists() and json.loads(metrics.read_text())[field] == value
