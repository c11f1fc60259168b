"""A run that stops early loses nothing: exact resume after any epoch, Ctrl-C at any step (in
the process and from the shell), divergence, out of memory. Interruptions are made through
torch's global forward hook (conftest.interrupted_at), never by replacing a function of train.py."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

import checkpoint
import settings
import train
from conftest import Watch, acting_at, interrupted_at
from utils import Diverged, Interrupted, UsageError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = dict(synthetic=True, synthetic_train=256, synthetic_test=128, width=8, batch_size=64,
            eval_batch_size=128, precision="fp32", device="cpu", progress=False, plots=False,
            lr_min=0.02, lr_max=0.2, epochs=3, peak_epoch=1)


def comparable(record):
    """The parts of a record that must be identical between runs (not the timings)."""
    hist = [{k: v for k, v in h.items() if not k.endswith("seconds")} for h in record["history"]]
    return hist, record["lr_schedule"], record.get("test_accuracy")


def weights(path):
    return torch.load(path, weights_only=True)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    out = tmp_path_factory.mktemp("full")
    record = train.main(**TINY, out_dir=str(out))
    return record, weights(out / "model.pt")


# ----------------------------------------------------------------------------------------------
# Exact resume

@pytest.mark.parametrize("stop_in_epoch", [2, 3])
def test_resume_after_any_epoch_is_bit_identical_to_an_uninterrupted_run(
        tmp_path, interrupt_in_epoch, uninterrupted, stop_in_epoch):
    full_record, full_weights = uninterrupted
    with interrupt_in_epoch(stop_in_epoch), pytest.raises(Interrupted, match="--resume") as e:
        train.main(**TINY, out_dir=str(tmp_path))
    assert f"epoch {stop_in_epoch - 1}" in str(e.value)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["status"] == "interrupted" and len(metrics["history"]) == stop_in_epoch - 1
    assert not (tmp_path / "model.pt").exists()

    with Watch(keep_inputs=False) as watch:               # the LR set before each resumed step
        resumed = train.main(resume=str(tmp_path / "checkpoint.pt"), progress=False)
    lrs = [s["lrs"] for s in watch.steps]
    assert comparable(resumed) == comparable(full_record)
    w = weights(tmp_path / "model.pt")
    assert w.keys() == full_weights.keys()
    assert all(torch.equal(w[k], full_weights[k]) for k in w), "weights differ after resume"
    done = (stop_in_epoch - 1) * resumed["steps_per_epoch"]   # the schedule goes on from there
    assert lrs == [[lr] * len(lrs[0]) for lr in full_record["lr_schedule"][done:]]
    assert not list(tmp_path.glob("*.png"))                # plots=False: no pictures


def test_checkpoint_holds_everything_needed_to_resume(tmp_path):
    train.main(**{**TINY, "epochs": 1, "peak_epoch": 1}, out_dir=str(tmp_path))
    ckpt = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    for key in ("model", "optimizer", "scaler", "rng", "loader_epoch", "config", "epoch", "step",
                "history", "lr_min", "lr_max", "lr_range_test"):
        assert key in ckpt, key
    assert ckpt["epoch"] == 1 and ckpt["step"] == 4 and ckpt["loader_epoch"] == 1
    assert ckpt["optimizer"]["state"], "momentum buffers must be saved"


def test_resume_refuses_a_changed_setting_but_allows_output_settings(tmp_path, interrupt_in_epoch):
    with interrupt_in_epoch(2), pytest.raises(Interrupted):
        train.main(**TINY, out_dir=str(tmp_path))
    path = str(tmp_path / "checkpoint.pt")
    with pytest.raises(UsageError, match="made with epochs=3.*epochs=5"):
        train.main(resume=path, epochs=5)
    with pytest.raises(UsageError, match="width=8"):
        train.main(resume=path, width=16)
    r = train.main(resume=path, progress=False, out_dir=str(tmp_path / "elsewhere"))
    assert r["status"] == "complete" and (tmp_path / "elsewhere" / "model.pt").exists()


def test_a_checkpoint_from_before_a_setting_existed_resumes_with_its_default(tmp_path, interrupt_in_epoch):
    """A checkpoint saved by a version without ema_epochs, cutout_inside and bn_weight_decay
    resumes (their defaults are that version's behaviour), and asking for another value of one
    of them is refused, not silently dropped."""
    with interrupt_in_epoch(2), pytest.raises(Interrupted):
        train.main(**TINY, out_dir=str(tmp_path))
    path = tmp_path / "checkpoint.pt"
    ckpt = torch.load(path, weights_only=True)
    for k in ("ema_epochs", "cutout_inside", "bn_weight_decay"):
        del ckpt["config"][k]
    del ckpt["average"]
    torch.save(ckpt, path)
    with pytest.raises(UsageError, match="made with ema_epochs=0.0.*ema_epochs=2"):
        train.main(resume=str(path), ema_epochs=2.0)
    assert train.main(resume=str(path), progress=False)["status"] == "complete"


# ----------------------------------------------------------------------------------------------
# Failures during training

def test_a_non_finite_loss_stops_at_once_naming_epoch_step_and_lr(tmp_path):
    """NaN logits from the 11th training step on (step 10, in epoch 2 of 8 steps each)."""
    cfg = {**TINY, "synthetic_train": 512, "epochs": 3}           # 8 steps per epoch
    watch = Watch(keep_inputs=False)
    watch.on_forward.append(lambda phase, count, module, out: out * float("nan") if phase == "train" and count > 10
                            else None)
    with watch, pytest.raises(Diverged) as e:
        train.main(**cfg, out_dir=str(tmp_path))
    lr = train.one_cycle_lr(10, 24, 7, 0.02, 0.2)
    msg = str(e.value)
    assert "epoch 2" in msg and "step 10" in msg and f"LR {lr:.4g}" in msg
    ckpt = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert ckpt["epoch"] == 1 and all(torch.isfinite(v).all() for v in ckpt["model"].values()
                                       if v.is_floating_point())
    assert json.loads((tmp_path / "metrics.json").read_text())["status"] == "diverged"


def test_cuda_out_of_memory_suggests_a_smaller_batch(tmp_path):
    oom = torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
    with interrupted_at("train", 1, oom), pytest.raises(UsageError, match="--batch-size 32"):
        train.main(**TINY, out_dir=str(tmp_path))


def cli(argv):
    return settings.cli(train.main, train.Config, argv)


CLI_TINY = ["--synthetic", "--synthetic-train", "256", "--synthetic-test", "64", "--width", "8",
            "--batch-size", "64", "--precision", "fp32", "--device", "cpu", "--no-plots", "--no-progress",
            "--lr-min", "0.02", "--lr-max", "0.2"]


def test_ctrl_c_at_a_chosen_step_keeps_the_last_checkpoint_and_says_how_to_resume(tmp_path, capsys,
                                                                                   interrupt_at_step):
    """Ctrl-C in the middle of epoch 2 (step 5, 4 steps per epoch), raised in that step's forward:
    epoch 1's checkpoint and metrics stay, one line says how to go on, and the command line exits
    with status 130."""
    with interrupt_at_step(5):
        assert cli([*CLI_TINY, "--epochs", "3", "--peak-epoch", "1", "--out-dir", str(tmp_path)]) == 130
    path = tmp_path / "checkpoint.pt"
    assert capsys.readouterr().err == (f"interrupted: the last complete checkpoint (epoch 1) is {path}; "
                                       f"continue with: python train.py --resume {path}\n")
    ckpt = torch.load(path, weights_only=True)
    assert (ckpt["epoch"], ckpt["step"], ckpt["loader_epoch"]) == (1, 4, 1)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["status"] == "interrupted" and [h["epoch"] for h in metrics["history"]] == [1]
    assert not (tmp_path / "model.pt").exists()


def test_ctrl_c_before_the_first_epoch_ends_says_there_is_nothing_to_resume(tmp_path, capsys, interrupt_at_step):
    with interrupt_at_step(2):
        assert cli([*CLI_TINY, "--epochs", "2", "--peak-epoch", "1", "--out-dir", str(tmp_path)]) == 130
    assert capsys.readouterr().err == ("interrupted: no epoch had finished, so there is nothing to resume; "
                                       "start again\n")
    assert not (tmp_path / "checkpoint.pt").exists() and not (tmp_path / "model.pt").exists()
    assert json.loads((tmp_path / "metrics.json").read_text())["status"] == "interrupted"


def started_and_one_epoch_recorded(tmp_path):
    """A long run started from the shell, once metrics.json records an epoch (polled, with a wide
    deadline), so whatever the run is doing then, a checkpoint exists: (process, metrics.json)."""
    proc = subprocess.Popen([sys.executable, "train.py", *CLI_TINY, "--epochs", "400", "--out-dir", str(tmp_path)],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    metrics = tmp_path / "metrics.json"

    def epochs_recorded():
        try:
            return len(json.loads(metrics.read_text())["history"])     # written whole (os.replace)
        except (OSError, ValueError):
            return 0
    deadline = time.time() + 240
    while epochs_recorded() < 1 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.1)
    assert proc.poll() is None, "the run ended before it could be stopped"
    return proc, metrics


def test_a_real_sigint_ends_the_process_with_one_line_and_status_130(tmp_path):
    """End to end, with the real signal, once a checkpoint exists."""
    proc, metrics = started_and_one_epoch_recorded(tmp_path)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=240)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "--resume" in err and len(err.strip().splitlines()) == 1
    recorded = json.loads(metrics.read_text())
    n = len(recorded["history"])
    assert recorded["status"] == "interrupted" and n >= 1
    # The signal may land after an epoch's checkpoint is written and before its metrics are, so
    # the checkpoint may hold one epoch more than the metrics; never fewer.
    assert torch.load(tmp_path / "checkpoint.pt", weights_only=True)["epoch"] in (n, n + 1)


def test_resume_with_a_weight_average_is_bit_identical(tmp_path, interrupt_in_epoch):
    """--ema-epochs: the average lives in the checkpoint, so a resumed run evaluates and saves
    exactly the average an uninterrupted run does (and not the trained weights)."""
    cfg = {**TINY, "ema_epochs": 0.5}
    full = train.main(**cfg, out_dir=str(tmp_path / "full"))
    with interrupt_in_epoch(2), pytest.raises(Interrupted):
        train.main(**cfg, out_dir=str(tmp_path / "cut"))
    ckpt = torch.load(tmp_path / "cut" / "checkpoint.pt", weights_only=True)
    assert ckpt["average"].keys() == ckpt["model"].keys()
    assert not torch.equal(ckpt["average"]["prep.conv.weight"], ckpt["model"]["prep.conv.weight"])
    resumed = train.main(resume=str(tmp_path / "cut" / "checkpoint.pt"), progress=False)
    assert comparable(resumed) == comparable(full)
    a, b = weights(tmp_path / "cut" / "model.pt"), weights(tmp_path / "full" / "model.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)


# ----------------------------------------------------------------------------------------------
# A folder that holds a run is never overwritten, and holds one run at a time

def files_of(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def test_a_new_run_into_a_folder_holding_a_finished_run_is_refused_and_changes_nothing(tmp_path, capsys):
    train.main(**{**TINY, "epochs": 1}, out_dir=str(tmp_path))
    before = files_of(tmp_path)
    assert cli([*CLI_TINY, "--out-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{tmp_path} already holds a complete run:" in err
    assert "another --out-dir" in err and "--overwrite" in err and "--resume" not in err   # nothing to continue
    assert files_of(tmp_path) == before
    r = train.main(**{**TINY, "epochs": 1, "seed": 5}, overwrite=True, out_dir=str(tmp_path))   # asked for
    assert r["config"]["seed"] == 5 and json.loads((tmp_path / "metrics.json").read_text())["config"]["seed"] == 5
    assert "--overwrite: removed a complete run" in capsys.readouterr().out


def test_a_new_run_into_an_interrupted_runs_folder_is_told_how_to_resume_it(tmp_path, interrupt_in_epoch):
    with interrupt_in_epoch(2), pytest.raises(Interrupted):
        train.main(**TINY, out_dir=str(tmp_path))
    before = files_of(tmp_path)
    with pytest.raises(UsageError, match=rf"holds a run that is interrupted after epoch 1\. Nothing was changed: to "
                                         rf"continue it, --resume {tmp_path / 'checkpoint.pt'}"):
        train.main(**TINY, out_dir=str(tmp_path))
    assert files_of(tmp_path) == before
    assert train.main(resume=str(tmp_path / "checkpoint.pt"))["status"] == "complete"      # its own folder: fine


def test_a_second_run_into_a_folder_in_use_is_refused(tmp_path):
    """Two runs started into one folder: the second is refused while the first holds its lock,
    and the first finishes as if alone."""
    first = subprocess.Popen([sys.executable, "train.py", *CLI_TINY, "--epochs", "400", "--out-dir", str(tmp_path)],
                             cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 240
    while not (tmp_path / ".run.lock").exists() and first.poll() is None and time.time() < deadline:
        time.sleep(0.1)
    second = subprocess.run([sys.executable, "train.py", *CLI_TINY, "--epochs", "1", "--out-dir", str(tmp_path)],
                            cwd=ROOT, capture_output=True, text=True, timeout=240)
    first.send_signal(signal.SIGINT)
    first.communicate(timeout=240)
    assert second.returncode == 2 and second.stderr.count("\n") == 1, second.stderr
    assert f"another run is writing to {tmp_path} (process {first.pid})" in second.stderr
    assert first.returncode == 130 and not (tmp_path / ".run.lock").exists()


@pytest.mark.skipif(checkpoint.fcntl is None, reason="no folder lock here (Windows)")
@pytest.mark.parametrize("kind", ["folder", "link"])
def test_a_lock_that_is_not_a_file_is_one_line_and_nothing_is_written_through_it(tmp_path, capsys, kind):
    """A folder where the lock file goes was a traceback; a link there had the run write its
    process id into the file linked to."""
    out, notes = tmp_path / "run", tmp_path / "notes.txt"
    out.mkdir()
    notes.write_text("mine")
    lock = out / checkpoint.LOCK
    lock.mkdir() if kind == "folder" else lock.symlink_to(notes)
    assert cli([*CLI_TINY, "--epochs", "1", "--peak-epoch", "1", "--out-dir", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{lock} is a {kind}, where a run keeps its lock file: nothing was changed" in err
    assert notes.read_text() == "mine" and os.listdir(out) == [checkpoint.LOCK]


@pytest.mark.parametrize("name", ["checkpoint.pt", "model.pt"])
def test_a_folder_where_a_run_writes_a_file_is_refused_before_it_starts_and_never_offered_to_resume(
        tmp_path, capsys, name):
    """It was taken for a run's file: '--resume out/checkpoint.pt' offered for a folder (or for a
    checkpoint that is not there), and --overwrite failed at it."""
    (tmp_path / name).mkdir()
    for overwrite in ([], ["--overwrite"]):
        assert cli([*CLI_TINY, "--epochs", "1", "--peak-epoch", "1", "--out-dir", str(tmp_path), *overwrite]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"{tmp_path / name} is not a file, where the run writes its {name}" in err
        assert "--resume" not in err
    assert os.listdir(tmp_path) == [name]


def test_a_run_whose_checkpoint_is_gone_is_not_offered_to_resume(tmp_path, interrupt_in_epoch):
    with interrupt_in_epoch(2), pytest.raises(Interrupted):
        train.main(**TINY, out_dir=str(tmp_path))
    (tmp_path / "checkpoint.pt").unlink()
    with pytest.raises(UsageError, match="holds a run that is interrupted after epoch 1. Nothing was changed: to keep") \
            as e:
        train.main(**TINY, out_dir=str(tmp_path))
    assert "--resume" not in str(e.value)


@pytest.mark.parametrize("record, says", [
    ([1, 2], "a metrics.json that is not a run's record (a JSON list, not an object)"),
    ("{not json", "a metrics.json that is not a run's record (not JSON)"),
    ({"status": "complete", "history": [1], "data": [1], "test_accuracy": 50},
     "a metrics.json that is not a run's record (its 'config' is missing"),
])
def test_a_folder_whose_record_is_not_one_is_kept_and_said_so_in_one_line(tmp_path, capsys, record, says):
    (tmp_path / "metrics.json").write_text(record if isinstance(record, str) else json.dumps(record))
    before = files_of(tmp_path)
    assert cli([*CLI_TINY, "--epochs", "1", "--peak-epoch", "1", "--out-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{tmp_path} already holds {says}" in err and "--overwrite" in err, err
    assert files_of(tmp_path) == before


def test_a_checkpoint_copied_elsewhere_resumes_beside_the_copy_and_leaves_the_original_alone(tmp_path, interrupt_in_epoch):
    with interrupt_in_epoch(2), pytest.raises(Interrupted):
        train.main(**TINY, out_dir=str(tmp_path / "original"))
    before = files_of(tmp_path / "original")
    (tmp_path / "copy").mkdir()
    (tmp_path / "copy" / "checkpoint.pt").write_bytes((tmp_path / "original" / "checkpoint.pt").read_bytes())
    r = train.main(resume=str(tmp_path / "copy" / "checkpoint.pt"))
    assert r["config"]["out_dir"] == str(tmp_path / "copy") and (tmp_path / "copy" / "model.pt").exists()
    assert files_of(tmp_path / "original") == before


# ----------------------------------------------------------------------------------------------
# A write that fails: one line, the last checkpoint intact, metrics.json "failed"

def test_a_file_size_limit_mid_run_keeps_the_last_checkpoint_and_says_how_to_resume(tmp_path, capsys, monkeypatch):
    """The size limit (RLIMIT_FSIZE: what a full disk does to a write, EFBIG instead of ENOSPC)
    is set after epoch 1's checkpoint, so epoch 2's checkpoint fails half-written: the temporary
    file is removed, epoch 1's checkpoint stays whole and resumes, and metrics.json says why."""
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    replaced = []
    real_replace = os.replace
    monkeypatch.setattr(os, "replace", lambda src, dst: (replaced.append((src, dst)), real_replace(src, dst))[1])
    limit = 20_000                                   # bytes: far below a checkpoint's size, above metrics.json's
    try:
        with acting_at("eval", 2, lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))):
            code = cli([*CLI_TINY, "--epochs", "3", "--peak-epoch", "1", "--out-dir", str(tmp_path / "run")])
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    err = capsys.readouterr().err
    path = tmp_path / "run" / "checkpoint.pt"
    assert code == 4 and err.count("\n") == 1, err
    assert f"could not write {path} (File too large)" in err and f"python train.py --resume {path}" in err
    assert "the last intact checkpoint (epoch 1)" in err
    assert not [f for f in os.listdir(tmp_path / "run") if f.endswith(".tmp")]
    assert all(os.path.dirname(src) == os.path.dirname(dst) for src, dst in replaced)   # temp beside its target
    assert torch.load(path, weights_only=True)["epoch"] == 1
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["status"] == "failed" and "File too large" in metrics["failure"] and len(metrics["history"]) == 1
    assert train.main(resume=str(path))["status"] == "complete"


def test_an_output_folder_removed_mid_run_is_one_line_not_a_traceback(tmp_path, capsys):
    import shutil
    out = tmp_path / "run"

    def remove():
        shutil.rmtree(out)
    with acting_at("eval", 2, remove):
        code = cli([*CLI_TINY, "--epochs", "3", "--peak-epoch", "1", "--out-dir", str(out)])
    err = capsys.readouterr().err
    assert code == 4 and err.count("\n") == 1 and "Traceback" not in err, err
    assert f"could not write {out / 'checkpoint.pt'}" in err and "No such file or directory" in err
    # Its checkpoint went with it: never called intact, never offered to --resume.
    assert f"the last checkpoint (epoch 1, {out / 'checkpoint.pt'}) no longer exists, so there is nothing to resume" \
        in err and "intact" not in err and "--resume" not in err


# ----------------------------------------------------------------------------------------------
# SIGTERM as Ctrl-C; weights checked themselves; fp16 resumes exactly

def test_sigterm_keeps_the_last_checkpoint_marks_the_run_interrupted_and_exits_143(tmp_path):
    proc, metrics = started_and_one_epoch_recorded(tmp_path)
    proc.terminate()                                                  # SIGTERM
    _, err = proc.communicate(timeout=240)
    assert proc.returncode == 143, err
    assert err.startswith("interrupted: the last complete checkpoint") and "--resume" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    recorded = json.loads(metrics.read_text())
    n = len(recorded["history"])
    assert recorded["status"] == "interrupted" and n >= 1
    assert checkpoint.read_checkpoint(str(tmp_path / "checkpoint.pt"))["epoch"] in (n, n + 1)   # and it reads


@pytest.mark.parametrize("threads", ["1", "2"])
def test_weights_broken_by_the_last_step_of_an_epoch_are_never_checkpointed(tmp_path, threads):
    """A huge LR breaks the weights; the check of the weights and BatchNorm statistics themselves
    (not only of the test loss, which may stay finite while a running_var is inf) stops the run,
    exit 3, before a checkpoint of broken weights is written: whatever checkpoint exists is finite."""
    args = ["--synthetic", "--synthetic-train", "256", "--synthetic-test", "64", "--width", "8",
            "--batch-size", "64", "--precision", "fp32", "--device", "cpu", "--no-plots", "--no-progress",
            "--epochs", "2", "--lr-min", "1e4", "--lr-max", "1e6", "--out-dir", str(tmp_path)]
    out = subprocess.run([sys.executable, "train.py", *args], cwd=ROOT, capture_output=True, text=True,
                         timeout=120, env={**os.environ, "OMP_NUM_THREADS": threads})
    assert out.returncode == 3, out.stderr
    assert "non-finite" in out.stderr and "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
    if (tmp_path / "checkpoint.pt").exists():
        ckpt = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
        assert all(torch.isfinite(v).all() for v in ckpt["model"].values() if v.is_floating_point())
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["status"] == "diverged"
    assert all(h["test_loss"] == h["test_loss"] for h in metrics["history"])       # no NaN epoch kept


def test_an_fp16_run_resumes_bit_identically_its_grad_scaler_included(tmp_path, interrupt_in_epoch):
    cfg = {**TINY, "precision": "fp16"}
    full = train.main(**cfg, out_dir=str(tmp_path / "full"))
    with interrupt_in_epoch(2), pytest.raises(Interrupted):
        train.main(**cfg, out_dir=str(tmp_path / "cut"))
    cut = torch.load(tmp_path / "cut" / "checkpoint.pt", weights_only=True)
    assert cut["scaler"]["scale"] > 0 and cut["epoch"] == 1
    resumed = train.main(resume=str(tmp_path / "cut" / "checkpoint.pt"))
    assert comparable(resumed) == comparable(full)
    a, b = weights(tmp_path / "cut" / "model.pt"), weights(tmp_path / "full" / "model.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)
    end_a = torch.load(tmp_path / "cut" / "checkpoint.pt", weights_only=True)["scaler"]
    end_b = torch.load(tmp_path / "full" / "checkpoint.pt", weights_only=True)["scaler"]
    assert end_a == end_b                                    # the scale and its growth tracker


def test_overwrite_removes_nothing_when_the_run_is_refused_for_its_device_or_data(tmp_path):
    train.main(**{**TINY, "epochs": 1}, out_dir=str(tmp_path))
    before = files_of(tmp_path)
    with pytest.raises(UsageError, match="CIFAR-10 not found"):
        train.main(**{**TINY, "epochs": 1, "synthetic": False}, data_dir=str(tmp_path / "none"), download=False,
                   overwrite=True, out_dir=str(tmp_path))
    assert files_of(tmp_path) == before


def test_a_run_and_a_series_never_land_in_each_others_folder(tmp_path):
    single, many = tmp_path / "single", tmp_path / "many"
    train.main(**{**TINY, "epochs": 1}, out_dir=str(single))
    before = files_of(single)
    with pytest.raises(UsageError, match=f"{single} already holds a complete run.*give the series another --out-dir"):
        train.main(**{**TINY, "epochs": 1}, seeds=2, out_dir=str(single))
    assert files_of(single) == before and not (single / "seed-0").exists()
    train.main(**{**TINY, "epochs": 1}, seeds=2, out_dir=str(many))
    before = files_of(many)
    with pytest.raises(UsageError, match=f"{many} already holds a series of runs \\(2 run folders seed-<s>\\)"):
        train.main(**{**TINY, "epochs": 1}, out_dir=str(many))
    assert files_of(many) == before
    grid = tmp_path / "grid"                       # a sweep's runs, one level down: <point>/seed-<s>
    train.main(**{**TINY, "epochs": 1}, sweep="label_smoothing=0,0.1", out_dir=str(grid))
    with pytest.raises(UsageError, match=f"{grid} already holds a series of runs \\(2 run folders seed-<s>\\)"):
        train.main(**{**TINY, "epochs": 1}, out_dir=str(grid))
    with pytest.raises(UsageError, match="--overwrite starts one run over; a series keeps its finished runs"):
        train.main(**{**TINY, "epochs": 1}, seeds=2, overwrite=True, out_dir=str(many))
