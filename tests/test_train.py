"""train.py: the one-cycle schedule against torch's OneCycleLR, the command line, and short runs."""
import dataclasses
import json
import os
import subprocess
import sys

import pytest
import torch

import lr_finder
import train
import utils
from custom_resnet import CustomResNet
from utils import UsageError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = dict(synthetic=True, synthetic_train=512, synthetic_test=256, width=8, batch_size=64,
            eval_batch_size=128, precision="fp32", device="cpu", progress=False, plots=False)


def run_cli(*args, timeout=120):
    return subprocess.run([sys.executable, "train.py", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)


# ----------------------------------------------------------------------------------------------
# The schedule

def torch_one_cycle_lrs(total, lr_min, lr_max, pct_start):
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=lr_min)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=lr_max, total_steps=total, pct_start=pct_start, anneal_strategy="linear",
        div_factor=lr_max / lr_min, final_div_factor=1.0, three_phase=False, cycle_momentum=False)
    lrs = []
    for _ in range(total):
        lrs.append(opt.param_groups[0]["lr"])   # the LR the step uses
        opt.step()
        sched.step()
    return lrs


@pytest.mark.parametrize("epochs, peak_epoch, steps_per_epoch", [(24, 5, 97), (24, 5, 7), (2, 2 * 5 / 24, 5), (10, 2, 13)])
def test_one_cycle_lr_equals_torch_one_cycle_at_every_step(epochs, peak_epoch, steps_per_epoch):
    lr_min, lr_max = 0.04, 0.4
    total = epochs * steps_per_epoch
    peak = peak_epoch * steps_per_epoch - 1
    ours = [train.one_cycle_lr(s, total, peak, lr_min, lr_max) for s in range(total)]
    ref = torch_one_cycle_lrs(total, lr_min, lr_max, peak_epoch / epochs)
    assert ours == pytest.approx(ref, rel=1e-9, abs=1e-12)
    assert ours[0] == pytest.approx(lr_min)                              # first step
    if float(peak).is_integer():
        assert ours[int(peak)] == pytest.approx(lr_max)                  # peak: last step of epoch 5
    assert max(ours) <= lr_max * (1 + 1e-12)
    assert ours[-1] == pytest.approx(lr_min)                             # last step
    assert min(ours) >= lr_min * (1 - 1e-12)                             # no annihilation


def test_one_cycle_lr_never_goes_below_lr_min_even_past_the_end():
    # OneCycleLR extrapolates below LRMIN after its last step; ours stays at LRMIN.
    assert train.one_cycle_lr(2400, 2328, 484, 0.04, 0.4) == 0.04


def test_default_peak_is_5_of_24_epochs_and_scales_with_epochs():
    assert train.make_config({}).peak_epoch == 5
    assert train.make_config({"epochs": 12}).peak_epoch == 2.5
    assert train.make_config({"epochs": 12, "peak_epoch": 3}).peak_epoch == 3


# ----------------------------------------------------------------------------------------------
# Settings and the command line

def test_resume_with_an_unknown_setting_is_rejected_before_reading_the_file(tmp_path):
    with pytest.raises(UsageError, match="'batch_sise'.*did you mean 'batch_size'"):
        train.main(resume=str(tmp_path / "checkpoint.pt"), batch_sise=7)


def test_fp16_with_a_grad_scaler_trains(tmp_path, monkeypatch):
    """The path Colab's T4 takes (fp16 autocast + GradScaler), here on the CPU: every step runs
    under fp16 autocast with the scaler on, and the weights move and stay finite. (No accuracy
    threshold: 2 epochs reach about 21% here, too close to chance to be a test.)"""
    dtypes, step = [], train.train_step

    def recording_step(model, x, y, optimizer, scaler, autocast, loss_fn):
        logits, loss = step(model, x, y, optimizer, scaler, autocast, loss_fn)
        dtypes.append((logits.dtype, scaler.is_enabled()))
        return logits, loss
    monkeypatch.setattr(train, "train_step", recording_step)
    r = train.main(**{**TINY, "precision": "fp16"}, epochs=2, peak_epoch=1, lr_min=0.02, lr_max=0.2,
                   out_dir=str(tmp_path))
    assert r["runtime"]["precision"] == "fp16"
    assert dtypes == [(torch.float16, True)] * 16
    assert torch.load(tmp_path / "checkpoint.pt", weights_only=True)["scaler"]["scale"] > 0
    torch.manual_seed(0)                                     # the weights build() starts from
    start = CustomResNet(width=8).state_dict()
    trained = torch.load(tmp_path / "model.pt", weights_only=True)
    assert all(torch.isfinite(v).all() for v in trained.values() if v.is_floating_point())
    assert not torch.equal(trained["layer3.conv.conv.weight"], start["layer3.conv.conv.weight"])
    assert all(h["train_loss"] == h["train_loss"] for h in r["history"])       # no NaN


def test_an_fp16_overflow_step_is_skipped_whole_even_the_first():
    """GradScaler skips a step whose gradients overflowed, which fp16's first steps usually do.
    torch's fused SGD does not skip it whole: on a first step it leaves uninitialised memory in
    the momentum buffer (seen with torch 2.14 on the CPU) and the weights blow up a step later,
    so train.build must not hand out a fused SGD."""
    cfg = train.make_config({**TINY, "precision": "fp16", "lr_min": 0.02, "lr_max": 0.2})
    rt = utils.pick_runtime("cpu", "fp16")
    model, optimizer, scaler = train.build(cfg, rt)
    assert scaler.is_enabled()
    x = torch.randn(8, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    y = torch.arange(8)
    loss_fn = torch.nn.CrossEntropyLoss()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    scale = scaler.get_scale()
    train.train_step(model, x * float("inf"), y, optimizer, scaler, rt.autocast, loss_fn)   # overflows
    assert scaler.get_scale() == scale / 2                                       # so it was skipped
    params = {k for k, _ in model.named_parameters()}
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items() if k in params)
    assert not optimizer.state                                                   # no momentum made yet
    for _ in range(2):
        train.train_step(model, x, y, optimizer, scaler, rt.autocast, loss_fn)
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_half_precision_on_mps_is_refused_with_what_to_use(monkeypatch):
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    for precision in ("fp16", "bf16"):
        with pytest.raises(UsageError, match="--precision fp32"):
            utils.pick_runtime("mps", precision)
    assert utils.pick_runtime("mps", "auto").precision == "fp32"


def test_help_lists_every_setting():
    out = run_cli("--help")
    assert out.returncode == 0
    for f in train.Config.__dataclass_fields__:
        assert "--" + f.replace("_", "-") in out.stdout, f


def test_help_groups_every_setting_and_says_what_empty_defaults_mean():
    out = run_cli("--help").stdout
    heads = [line[:-1] for line in out.splitlines() if line.endswith(":") and not line.startswith(" ")]
    assert heads[1:] == ["recipe", "LR range test (runs when neither LR is given)", "data and augmentation",
                         "output and reports", "device and precision", "examples"], heads
    # every field in exactly one group, in Config's order: the groups are runs of fields
    names = [f.name for f in dataclasses.fields(train.Config)]
    assert names[0] in train.HELP_GROUPS and set(train.HELP_GROUPS) <= set(names)
    flat = " ".join(out.split())
    assert "(default: None)" not in flat and "(default: )" not in flat
    assert "--lr-max LR LRMAX, the peak LR (giving it skips the range test) (default: found by the LR range test)" in flat
    assert "--resume PATH" in flat and "(default: none, a new run)" in flat
    assert "(default: on)" in flat and "(default: off)" in flat


def test_help_examples_parse_and_match_the_defaults():
    examples = run_cli("--help").stdout.split("examples:")[1]
    commands = [line.split("#")[0].split()[2:] for line in examples.splitlines() if "python train.py" in line]
    assert len(commands) >= 5
    for argv in commands:
        train.parse_args(argv)                    # SystemExit on a flag that no longer exists
    # the LRMIN it promises for --lr-max 0.4 is the one such a run uses
    line = next(line for line in examples.splitlines() if "--lr-max 0.4" in line)
    promised = 0.4 / float(line.split("/")[-1])
    cfg = train.make_config(train.parse_args(["--lr-max", "0.4"]))
    lr_min, lr_max, _, _ = train.find_lrs(cfg, None, None, None, None, None, None, print)
    assert (lr_min, lr_max) == (pytest.approx(promised), 0.4)


def test_unknown_flag_is_one_clear_line():
    out = run_cli("--epoch", "3")
    assert out.returncode == 2
    assert "unrecognized arguments: --epoch" in out.stderr and "Traceback" not in out.stderr
    assert "did you mean --epochs?" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


def test_unknown_keyword_of_main_is_rejected_with_a_suggestion():
    with pytest.raises(UsageError, match="'epoch'.*did you mean 'epochs'"):
        train.main(epoch=3)


@pytest.mark.parametrize("overrides, message", [
    (dict(batch_size=0), "batch_size must be at least 1"),
    (dict(batch_size=-4), "batch_size must be at least 1"),
    (dict(epochs=3, peak_epoch=5), "smaller than peak_epoch"),
    (dict(lr_min=0.5, lr_max=0.1), "greater than lr_max"),
    (dict(lr_max=0.0), "lr_max must be a positive number"),
    (dict(lr_min=-0.1), "lr_min must be a positive number"),
    (dict(lr_max=float("nan")), "lr_max must be a positive number"),
    (dict(precision="fp8"), "precision"),
    (dict(pad_mode="circular"), "pad_mode"),
    (dict(epochs=2.5), "epochs must be int"),
    (dict(lr_max="0.1"), "lr_max must be a number or None"),
    (dict(synthetic="yes"), "synthetic must be bool"),
    (dict(momentum=0.0), "Nesterov momentum needs momentum > 0"),
    (dict(weight_decay=-1e-4), "weight_decay must be at least 0"),
    (dict(seed=2**62), "seed must lie in"),
])
def test_bad_settings_raise_usage_error(overrides, message):
    with pytest.raises(UsageError, match=message):
        train.make_config(overrides)


@pytest.mark.parametrize("args, message", [
    (["--batch-size", "0"], "batch_size must be at least 1"),
    (["--epochs", "2", "--peak-epoch", "5"], "smaller than peak_epoch"),
    (["--lr-min", "1", "--lr-max", "0.1"], "greater than lr_max"),
    (["--lr-max", "-1"], "lr_max must be a positive number"),
])
def test_cli_prints_one_line_and_exits_2_for_bad_settings(args, message):
    out = run_cli(*args)
    assert out.returncode == 2 and message in out.stderr
    assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_asking_for_a_missing_gpu_is_a_clear_error(tmp_path):
    out = run_cli("--synthetic", "--device", "cuda", "--out-dir", str(tmp_path))
    assert out.returncode == 2 and "no CUDA GPU" in out.stderr and "Traceback" not in out.stderr


def test_an_out_dir_that_cannot_be_created_is_a_clear_error(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    out = run_cli("--synthetic", "--out-dir", str(blocker / "run"))
    assert out.returncode == 2 and "cannot write to the output folder" in out.stderr
    assert "Traceback" not in out.stderr


def test_missing_cifar_offline_is_a_clear_error(tmp_path):
    out = run_cli("--data-dir", str(tmp_path / "none"), "--no-download", "--out-dir", str(tmp_path / "o"))
    assert out.returncode == 2 and "CIFAR-10 not found" in out.stderr and "--synthetic" in out.stderr
    assert "Traceback" not in out.stderr


def test_a_truncated_batch_file_is_a_clear_error_from_the_cli(tmp_path):
    from cifar_files import write_cifar_folder
    write_cifar_folder(tmp_path, n_per_batch=2)
    path = tmp_path / "cifar-10-batches-py" / "data_batch_3"
    path.write_bytes(path.read_bytes()[:100])
    out = run_cli("--data-dir", str(tmp_path), "--no-download", "--out-dir", str(tmp_path / "o"))
    assert out.returncode == 2 and "data_batch_3" in out.stderr and "Traceback" not in out.stderr


# ----------------------------------------------------------------------------------------------
# Short runs

def test_a_short_synthetic_run_learns_and_writes_metrics_and_weights(tmp_path):
    r = train.main(**TINY, epochs=4, peak_epoch=1, lr_min=0.02, lr_max=0.2, out_dir=str(tmp_path))
    assert r["status"] == "complete"
    # Only "it learns": the wiring is pinned by tests/test_wiring.py, not by an accuracy. Chance is
    # 10%; this run reaches 53.1% (torch 2.14, CPU), so 25% leaves 28 points (72 of 256 images).
    assert r["test_accuracy"] > 25
    assert [h["epoch"] for h in r["history"]] == [1, 2, 3, 4]
    assert r["history"][-1]["train_loss"] < r["history"][0]["train_loss"]
    on_disk = json.loads((tmp_path / "metrics.json").read_text())
    assert on_disk["test_accuracy"] == r["test_accuracy"] and on_disk["lr_max"] == 0.2
    for key in ("config", "runtime", "timings", "per_class_accuracy", "history", "lr_schedule"):
        assert key in on_disk, key
    assert on_disk["runtime"]["precision"] == "fp32" and on_disk["data"]["test_images"] == 256
    assert set(on_disk["timings"]) >= {"train_seconds", "eval_seconds", "images_per_second", "compile_seconds"}
    # The LR schedule recorded is the one-cycle schedule between the given LRs.
    sched = on_disk["lr_schedule"]
    assert sched == pytest.approx(torch_one_cycle_lrs(4 * 8, 0.02, 0.2, 1 / 4), rel=1e-9)
    model = CustomResNet(width=8)
    model.load_state_dict(torch.load(tmp_path / "model.pt", weights_only=True))
    # The saved weights reproduce the recorded test accuracy.
    from data import DeviceLoader, synthetic_cifar10
    d = synthetic_cifar10(512, 256, seed=0)
    ev = train.evaluate(model, DeviceLoader(d.test_images, d.test_labels, 128, train=False, device="cpu"),
                        train.utils.pick_runtime("cpu", "fp32"))
    assert ev["correct"] == r["test_correct"]


def test_a_validation_split_is_reported_as_validation_everywhere(tmp_path, capsys, monkeypatch):
    """On cifar10_jpeg.py's folder (test_batch labelled "validation split") the log lines, the
    record and every picture name the held-out images "validation", --subset included."""
    from cifar_files import write_cifar_folder
    from test_data import label_test_batch
    write_cifar_folder(tmp_path, n_per_batch=40)
    label_test_batch(tmp_path, "validation split")
    splits = {}
    for name in ("plot_curves", "plot_misclassified", "plot_gradcam", "plot_confusion"):
        real = getattr(train.utils, name)
        monkeypatch.setattr(train.utils, name, lambda *a, _n=name, _f=real, **k: (splits.update({_n: k.get("split")}),
                                                                                _f(*a, **k))[1])
    real_data = {k: v for k, v in TINY.items() if not k.startswith("synthetic")}
    r = train.main(**{**real_data, "plots": True}, data_dir=str(tmp_path), download=False, subset=128, epochs=1,
                   lr_min=0.02, lr_max=0.2, out_dir=str(tmp_path / "out"))
    out = capsys.readouterr().out
    assert r["data"]["eval_split"] == "validation" and r["data"]["test_images"] == 40
    assert "Validation set: Average loss" in out and "Test set" not in out
    assert "40 validation images" in out and "validation accuracy" in out
    assert splits == dict.fromkeys(splits, "validation") and len(splits) == 4


def test_subset_keeps_the_first_n_images(tmp_path):
    r = train.main(**{**TINY, "synthetic_train": 600}, subset=192, epochs=1, lr_min=0.02, lr_max=0.2,
                   out_dir=str(tmp_path))
    assert r["data"]["train_images"] == 192 and r["data"]["test_images"] == 192
    assert r["steps_per_epoch"] == 3


def test_main_without_lrs_finds_them_records_them_and_trains_with_them(tmp_path):
    r = train.main(**{**TINY, "plots": True}, epochs=2, lr_test_iters=12, lr_backoff=2.0, lr_min_factor=8.0,
                   lr_rise=0.2, out_dir=str(tmp_path))
    rt = r["lr_range_test"]
    assert r["lr_source"] == "range test" and len(rt["lrs"]) >= 2
    # the rule's three settings reach lr_finder.pick_lrs: the recorded LRs are its reading of the curve
    i = lr_finder.first_minimum(rt["smoothed"], 0.2)
    assert r["lr_max"] == rt["lr_max"] == rt["lrs"][i] / 2.0
    assert r["lr_min"] == pytest.approx(r["lr_max"] / 8.0)
    assert "minimum of the smoothed loss" in rt["rule"] and "rises 20%" in rt["rule"]
    sched = r["lr_schedule"]
    assert sched[0] == pytest.approx(r["lr_min"]) and sched[-1] == pytest.approx(r["lr_min"])
    assert max(sched) <= r["lr_max"] and max(sched) > 0.8 * r["lr_max"]
    assert (tmp_path / "lr_range_test.png").stat().st_size > 10_000


def test_one_given_lr_sets_the_other_by_the_factor(tmp_path):
    stale = tmp_path / "lr_range_test.png"
    stale.write_bytes(b"an earlier run's plot")
    r = train.main(**TINY, epochs=1, lr_max=0.3, lr_min_factor=12, out_dir=str(tmp_path))
    assert not stale.exists()          # a range test plot would not describe these LRs
    assert r["lr_range_test"] is None and r["lr_min"] == pytest.approx(0.3 / 12)
    assert r["lr_schedule"][0] == r["lr_min"] and max(r["lr_schedule"]) <= 0.3
    r = train.main(**TINY, epochs=1, lr_min=0.01, lr_min_factor=20, out_dir=str(tmp_path))
    assert r["lr_max"] == pytest.approx(0.2) and r["lr_schedule"][0] == 0.01


def test_a_full_run_makes_every_picture(tmp_path):
    import matplotlib.image
    train.main(**{**TINY, "plots": True}, epochs=2, lr_min=0.02, lr_max=0.2, out_dir=str(tmp_path))
    for name in ["curves.png", "lr_schedule.png", "misclassified.png", "gradcam.png", "confusion.png"]:
        img = matplotlib.image.imread(tmp_path / name)
        assert img.std() > 0.02, name


def test_the_same_seed_gives_bit_identical_cpu_fp32_runs(tmp_path):
    a = train.main(**TINY, epochs=1, lr_min=0.02, lr_max=0.2, seed=3, out_dir=str(tmp_path / "a"))
    b = train.main(**TINY, epochs=1, lr_min=0.02, lr_max=0.2, seed=3, out_dir=str(tmp_path / "b"))
    wa = torch.load(tmp_path / "a" / "model.pt", weights_only=True)
    wb = torch.load(tmp_path / "b" / "model.pt", weights_only=True)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert a["history"][0]["train_loss"] == b["history"][0]["train_loss"]
    train.main(**TINY, epochs=1, lr_min=0.02, lr_max=0.2, seed=4, out_dir=str(tmp_path / "c"))
    wc = torch.load(tmp_path / "c" / "model.pt", weights_only=True)
    assert not torch.equal(wa["prep.conv.weight"], wc["prep.conv.weight"])


def test_compile_warm_up_leaves_no_trace(tmp_path, monkeypatch):
    """--compile compiles on one step before training and undoes it: with a backend that runs
    the same kernels ("eager"), the run is bit-identical to an uncompiled one."""
    real_compile = torch.compile
    compile_eager = lambda model, **kw: real_compile(model, backend="eager", **kw)   # noqa: E731
    cfg = dict(**TINY, epochs=2, peak_epoch=1, lr_min=0.02, lr_max=0.2)
    plain = train.main(**cfg, out_dir=str(tmp_path / "plain"))
    monkeypatch.setattr(torch, "compile", compile_eager)
    compiled = train.main(**cfg, compile=True, out_dir=str(tmp_path / "compiled"))
    assert compiled["timings"]["compile_seconds"] > 0
    assert [h["train_loss"] for h in compiled["history"]] == [h["train_loss"] for h in plain["history"]]
    wa = torch.load(tmp_path / "plain" / "model.pt", weights_only=True)
    wb = torch.load(tmp_path / "compiled" / "model.pt", weights_only=True)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
