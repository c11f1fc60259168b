"""experiments/jpeg_penalty.py: its statistics against known values, and its whole plan at tiny
size on pairs written here (the pictures, original and JPEG, are in ../shared/data; nothing here reads them)."""
import json
import math

import numpy as np
import pytest

import experiments.gpu_jpeg_recipe as recipe
import experiments.jpeg_penalty as jpeg_penalty
from cifar_files import write_cifar_folder


@pytest.mark.parametrize("df, quantile", [(1, 12.7062), (2, 4.3027), (5, 2.5706), (10, 2.2281), (30, 2.0423)])
def test_t_quantile_matches_the_tables(df, quantile):
    assert jpeg_penalty.t_quantile(0.975, df) == pytest.approx(quantile, abs=2e-4)


def test_the_fit_recovers_a_line_with_the_textbook_interval():
    xs = [5.8, 5.8, 7.4, 7.4, 9.0, 9.0, 11.5, 11.5]
    exact = jpeg_penalty.fit_at_zero(xs, [80 - 1.5 * x for x in xs], 1)
    assert exact["at_zero"] == pytest.approx(80) and exact["coef"][1] == pytest.approx(-1.5)
    noise = [0.4, -0.4, -0.3, 0.3, 0.2, -0.2, 0.5, -0.5]
    ys = [80 - 1.5 * x + e for x, e in zip(xs, noise)]
    f = jpeg_penalty.fit_at_zero(xs, ys, 1)
    # the intercept's standard error of simple regression: s * sqrt(1/n + mean(x)^2 / Sxx)
    n, mx, my = len(xs), sum(xs) / len(xs), sum(ys) / len(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx
    resid = [y - (my + slope * (x - mx)) for x, y in zip(xs, ys)]
    se = math.sqrt(sum(r * r for r in resid) / (n - 2)) * math.sqrt(1 / n + mx ** 2 / sxx)
    assert f["dof"] == 6 and f["se"] == pytest.approx(se)
    assert f["ci95"] == pytest.approx([f["at_zero"] - 2.4469 * se, f["at_zero"] + 2.4469 * se], abs=1e-3)
    assert jpeg_penalty.fit_at_zero(xs, [80 - 0.1 * x * x for x in xs], 2)["at_zero"] == pytest.approx(80)
    none_left = jpeg_penalty.fit_at_zero([5.8, 7.4, 9.0], [70, 69, 68.5], 2)    # 3 points, 3 coefficients
    assert none_left["dof"] == 0 and none_left["ci95"] is None


def test_the_extrapolation_is_fitted_seed_by_seed():
    """A seed's points share their initial weights and data order: each seed is fitted alone and
    the interval comes from the seeds' intercepts (t with seeds - 1 df)."""
    xs = [5.8, 9.3, 9.0, 11.5]
    by_seed = {s: [(x, 75 + s - 0.8 * x) for x in xs] for s in range(3)}            # intercepts 75, 76, 77
    f = jpeg_penalty.extrapolate_by_seed(by_seed, 1)
    assert f["at_zero_by_seed"] == pytest.approx({0: 75, 1: 76, 2: 77})
    assert f["mean"] == pytest.approx(76) and f["se"] == pytest.approx(1 / math.sqrt(3))
    assert f["ci95"] == pytest.approx([76 - 4.3027 / math.sqrt(3), 76 + 4.3027 / math.sqrt(3)], abs=1e-3)
    assert f["coef_mean"] == pytest.approx([76, -0.8])
    one = jpeg_penalty.extrapolate_by_seed({0: by_seed[0], 1: by_seed[1][:1]}, 1)   # seed 1: one point
    assert one["seeds"] == [0] and one["ci95"] is None


def test_reencoding_keeps_the_pictures_and_adds_error_as_quality_falls(tmp_path):
    write_cifar_folder(tmp_path / "original", n_per_batch=8, keys="str")
    src = str(tmp_path / "original" / "cifar-10-batches-py")
    for q in (90, 15):
        jpeg_penalty.degrade_folder(src, str(tmp_path / f"q{q}" / "cifar-10-batches-py"), q)
    original = jpeg_penalty.folder_images(str(tmp_path / "original"))
    errors = {q: np.abs(jpeg_penalty.folder_images(str(tmp_path / f"q{q}")).astype(int) - original).mean()
              for q in (90, 15)}
    assert 0 < errors[90] < errors[15]
    import data
    a, b = data.load_cifar10(str(tmp_path / "original"), download=False), data.load_cifar10(str(tmp_path / "q15"), download=False)
    assert (a.train_labels == b.train_labels).all() and (a.test_labels == b.test_labels).all()


def test_the_whole_plan_runs_and_reports_at_tiny_size(tmp_path, capsys):
    pairs = tmp_path / "data" / "pairs"
    write_cifar_folder(pairs / "original", n_per_batch=24, keys="str")
    jpeg_penalty.degrade_folder(str(pairs / "original" / "cifar-10-batches-py"),
                                str(pairs / "jpeg" / "cifar-10-batches-py"), 75)
    tiny = dict(epochs=1, peak_epoch=1, batch_size=24, lr_test_iters=3, precision="fp32", device="cpu")
    out = jpeg_penalty.main(["--out", str(tmp_path), "--width", "4", "--seeds", "2", "--fixed-seeds", "2",
                             "--set", json.dumps(tiny)])
    assert set(out["arms"]) == {"found", "fixed"} and out["arms"]["found"]["seeds"] == [0, 1]
    assert {r["trained_on"] for r in out["cross"]} == {"original", "jpeg"} and len(out["cross"]) == 4
    assert {f"fixed-{n}" for n in ("original", "jpeg", "jpeg-q50", "jpeg-q30", "jpeg-q15")} <= set(out["runs"])
    lrs = {r["lr_max"] for name, runs in out["runs"].items() if name.startswith("fixed") for r in runs.values()}
    assert len(lrs) == 1                                   # one fixed LR for every side
    assert [f["degree"] for f in out["fit"]["fits"]] == [1, 2] and len(out["fit"]["points_by_seed"]) == 2
    assert all(len(points) == 4 for points in out["fit"]["points_by_seed"].values())
    assert out["pixel_errors"]["original"]["mae"] == 0 and out["pixel_errors"]["jpeg-q15"]["mae"] > 0
    assert (tmp_path / "jpeg_penalty.png").exists() and (tmp_path / "jpeg_penalty.json").exists()
    assert "| found | 2 |" in capsys.readouterr().out


def test_found_runs_with_the_fixed_lrs_serve_as_the_fixed_arm():
    def rec(lr_max, seed):
        return {"lr_max": lr_max, "lr_min": lr_max / 20, "seed": seed}
    runs = {("found", "original"): {0: rec(0.3, 0), 1: rec(0.3, 1), 2: rec(0.2, 2)},
            ("found", "jpeg"): {0: rec(0.3, 0), 1: rec(0.3, 1)},
            ("fixed", "original"): {0: rec(0.3, 0)}, ("fixed", "jpeg-q50"): {0: rec(0.3, 0)}}
    reused = jpeg_penalty.reuse_found_runs(runs)
    assert reused == {"original": [1], "jpeg": [0, 1]}            # not seed 2: its test found 0.2
    assert runs["fixed", "original"][1] is runs["found", "original"][1]
    assert runs["fixed", "original"][0]["lr_max"] == 0.3 and 2 not in runs["fixed", "original"]
    assert jpeg_penalty.reuse_found_runs({("found", "jpeg"): {0: rec(0.3, 0)}}) == {}     # no fixed arm yet


def test_the_candidates_plan_is_a_series_of_arms_against_the_default(tmp_path, one_cpu_thread):
    """Each arm over the seeds in a folder named for its settings, through series.run_series (so
    torchrun can spread it), the default first: the baseline of the paired differences."""
    tiny = dict(synthetic=True, synthetic_train=128, synthetic_test=64, width=4, batch_size=64, eval_batch_size=64,
                epochs=1, peak_epoch=1, lr_max=0.1, precision="fp32", device="cpu")
    summary = recipe.main(["--data-dir", str(tmp_path / "none"), "--plan", "candidates", "--seeds", "2",
                           "--out", str(tmp_path / "c"), "--set", json.dumps(tiny)])
    arms = ["default", "cutout_inside=true", "bn_weight_decay=false", "label_smoothing=0.2", "ema_epochs=2.0"]
    assert sorted(p.name for p in (tmp_path / "c").iterdir() if p.is_dir()) == sorted(arms)
    assert summary["runs_planned"] == 10 and summary["status"] == "complete"
    table = {p["point"]: p for p in summary["points"]}
    assert table["default"]["minus_first"] is None and table["ema_epochs=2.0"]["minus_first"]["pairs"] == 2
    record = json.loads((tmp_path / "c" / "label_smoothing=0.2" / "seed-1" / "metrics.json").read_text())
    assert record["config"]["label_smoothing"] == 0.2 and record["config"]["seed"] == 1
    assert record["config"]["download"] is False


FAKE_CIFAR10_JPEG = '''
import os, pickle, sys
import numpy as np
out = os.path.join(sys.argv[1], "cifar-10-batches-py")
os.makedirs(out)
rng = np.random.default_rng(0)
for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
    batch = {"data": rng.integers(0, 256, (24, 3072), dtype=np.uint8), "labels": [i % 10 for i in range(24)],
             "batch_label": "validation split" if name == "test_batch" else "training batch"}
    with open(os.path.join(out, name), "wb") as f:
        pickle.dump(batch, f)
'''


def test_the_full_scale_plan_needs_only_the_jpeg_script_and_the_measured_errors(tmp_path, capsys):
    """--scale full on a GPU machine: the split comes from cifar10_jpeg.py (faked here), the x axis
    from a small-scale record (--errors-from), so the pairs are never written."""
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "cifar10_jpeg.py").write_text(FAKE_CIFAR10_JPEG)
    errors = {"pixel_errors": {"original": {"mae": 0.0}, "jpeg": {"mae": 5.8}, "jpeg-q50": {"mae": 9.3},
                               "jpeg-q30": {"mae": 9.0}, "jpeg-q15": {"mae": 11.5}}}
    (tmp_path / "small.json").write_text(json.dumps(errors))
    tiny = dict(epochs=1, peak_epoch=1, batch_size=24, lr_test_iters=3, precision="fp32", device="cpu")
    out = jpeg_penalty.main(["--scale", "full", "--shared", str(shared), "--errors-from", str(tmp_path / "small.json"),
                             "--out", str(tmp_path / "full"), "--width", "4", "--fixed-seeds", "2",
                             "--set", json.dumps(tiny)])
    assert not (tmp_path / "full" / "data" / "pairs").exists()
    assert set(out["runs"]) == {"found-jpeg", "fixed-jpeg", "fixed-jpeg-q50", "fixed-jpeg-q30", "fixed-jpeg-q15"}
    assert out["pixel_errors"] == errors["pixel_errors"] and [f["degree"] for f in out["fit"]["fits"]] == [1, 2]
    assert out["data"]["eval_split"] == "validation" and (tmp_path / "full" / "jpeg_penalty.png").exists()
    with pytest.raises(SystemExit):
        jpeg_penalty.main(["--errors-from", str(tmp_path / "small.json"), "--out", str(tmp_path / "x")])
