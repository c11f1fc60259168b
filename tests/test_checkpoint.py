"""checkpoint.py: what a run keeps, and what is refused when it is read back: missing, garbage,
foreign, hostile and misfitting files each get one clear UsageError and run nothing."""
import os
import subprocess
import sys

import pytest
import torch

import checkpoint
import train
from custom_resnet import CustomResNet
from utils import UsageError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = dict(synthetic=True, synthetic_train=256, synthetic_test=64, width=8, batch_size=64, eval_batch_size=64,
            precision="fp32", device="cpu", progress=False, plots=False, lr_min=0.02, lr_max=0.2, epochs=1,
            peak_epoch=1)


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    out = tmp_path_factory.mktemp("finished")
    record = train.main(**TINY, out_dir=str(out))
    return out, record


def test_checkpoint_holds_everything_needed_to_resume(finished):
    out, record = finished
    ckpt = torch.load(out / "checkpoint.pt", weights_only=True)
    for key in ("format", "model", "average", "optimizer", "scaler", "rng", "loader_epoch", "config", "epoch",
                "step", "history", "lr_min", "lr_max", "lr_source", "lr_range_test"):
        assert key in ckpt, key
    assert ckpt["format"] == checkpoint.FORMAT
    assert ckpt["epoch"] == 1 and ckpt["step"] == 4 and ckpt["loader_epoch"] == 1
    assert ckpt["optimizer"]["state"], "momentum buffers must be saved"
    assert ckpt["history"] == record["history"] and ckpt["config"] == record["config"]
    assert checkpoint.read_checkpoint(str(out / "checkpoint.pt"))["step"] == 4


def test_model_pt_holds_the_final_weights_on_the_cpu(finished):
    out, _ = finished
    weights = checkpoint.read_weights(str(out / "model.pt"), "give a model.pt")
    ckpt = torch.load(out / "checkpoint.pt", weights_only=True)
    assert weights.keys() == ckpt["model"].keys()
    assert all(torch.equal(weights[k], ckpt["model"][k]) and weights[k].device.type == "cpu" for k in weights)
    with pytest.raises(UsageError, match="is a training checkpoint.*model.pt"):
        checkpoint.read_weights(str(out / "checkpoint.pt"), "give a model.pt")


def test_resume_from_missing_garbage_or_foreign_files_is_refused(tmp_path):
    with pytest.raises(UsageError, match="no such file"):
        train.main(resume=str(tmp_path / "nope.pt"))
    with pytest.raises(UsageError, match="is a folder; give the checkpoint.pt of an earlier run"):
        train.main(resume=str(tmp_path))
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(os.urandom(2000))
    with pytest.raises(UsageError, match="not a readable checkpoint"):
        train.main(resume=str(garbage))
    foreign = tmp_path / "weights_only.pt"
    torch.save(CustomResNet(width=8).state_dict(), foreign)
    with pytest.raises(UsageError, match="not a checkpoint of this trainer"):
        train.main(resume=str(foreign))


class _Hostile:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_checkpoint_that_would_run_code_is_refused_and_runs_nothing(tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    torch.save({"format": checkpoint.FORMAT, "model": _Hostile(str(marker))}, evil)
    with pytest.raises(UsageError, match="not a readable checkpoint"):
        train.main(resume=str(evil))
    assert not marker.exists()
    # The CLI says so in one line.
    out = subprocess.run([sys.executable, "train.py", "--resume", str(evil)], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "Traceback" not in out.stderr and not marker.exists()


def test_a_checkpoint_of_another_architecture_is_refused(tmp_path):
    train.main(**TINY, out_dir=str(tmp_path))
    path = tmp_path / "checkpoint.pt"
    ckpt = torch.load(path, weights_only=True)
    ckpt["model"] = CustomResNet(width=16).state_dict()      # weights that do not fit width=8
    torch.save(ckpt, path)
    with pytest.raises(UsageError, match="do not fit CustomResNet"):
        train.main(resume=str(path))
