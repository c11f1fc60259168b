"""utils.py: the errors' exit statuses, the one place device and precision are chosen, the
provenance of a run, and files that are whole or absent."""
import os

import pytest
import torch

import utils
from utils import UsageError


def test_each_error_has_its_exit_status():
    assert (UsageError.exit_code, utils.Interrupted.exit_code, utils.Diverged.exit_code) == (2, 130, 3)
    assert issubclass(utils.Interrupted, UsageError) and issubclass(utils.Diverged, UsageError)


def test_the_cpu_gets_fp32_or_its_native_bf16_and_fp16_gets_a_grad_scaler():
    rt = utils.pick_runtime("cpu", "auto")
    assert rt.device == torch.device("cpu") and rt.precision == ("bf16" if utils.cpu_supports_bf16() else "fp32")
    assert not utils.pick_runtime("cpu", "fp32").grad_scaler().is_enabled()
    assert utils.pick_runtime("cpu", "fp16").grad_scaler().is_enabled()
    with utils.pick_runtime("cpu", "bf16").autocast():
        assert torch.zeros(2, 2).mm(torch.zeros(2, 2)).dtype == torch.bfloat16
    with utils.pick_runtime("cpu", "fp32").autocast():
        assert torch.zeros(2, 2).mm(torch.zeros(2, 2)).dtype == torch.float32
    with pytest.raises(UsageError, match="precision must be"):
        utils.pick_runtime("cpu", "fp8")
    with pytest.raises(UsageError, match="unknown device"):
        utils.pick_runtime("gpu0", "auto")


def test_half_precision_on_mps_is_refused_with_what_to_use(monkeypatch):
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    for precision in ("fp16", "bf16"):
        with pytest.raises(UsageError, match="--precision fp32"):
            utils.pick_runtime("mps", precision)
    assert utils.pick_runtime("mps", "auto").precision == "fp32"


def test_the_runtime_describes_the_hardware_a_run_used():
    info = utils.pick_runtime("cpu", "fp32").describe()
    assert info["device"] == "cpu" and info["precision"] == "fp32" and info["torch"] == torch.__version__
    assert info["cpu"] and info["cpu_threads"] == torch.get_num_threads()


def test_the_code_version_is_the_checkouts_commit_or_none_outside_git(tmp_path):
    here = utils.code_version()
    assert here["git_commit"] is None or len(here["git_commit"]) == 40
    assert utils.code_version(str(tmp_path)) == {"git_commit": None, "git_dirty": None}


def test_a_failed_save_leaves_the_previous_file_whole_and_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.pt"
    utils.atomic_torch_save({"v": torch.arange(3)}, path)

    def crash(obj, f):
        f.write(b"half a checkpoi")
        raise OSError("disk full")
    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(OSError):
        utils.atomic_torch_save({"v": torch.arange(5)}, path)
    monkeypatch.undo()
    assert torch.equal(torch.load(path, weights_only=True)["v"], torch.arange(3))
    assert os.listdir(tmp_path) == ["checkpoint.pt"]


def test_the_temporary_file_is_made_in_the_targets_own_folder(tmp_path):
    seen = []
    utils.atomic_write(tmp_path / "a.json", lambda tmp: (seen.append(tmp), open(tmp, "w").write("{}")))
    assert os.path.dirname(seen[0]) == str(tmp_path) and (tmp_path / "a.json").read_text() == "{}"


def test_an_output_folder_that_cannot_be_written_is_a_usage_error(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(UsageError, match="Choose another with --out-dir"):
        utils.ensure_writable_dir(str(tmp_path / "file" / "sub"))
    utils.ensure_writable_dir(str(tmp_path / "new" / "sub"))
    assert (tmp_path / "new" / "sub").is_dir() and os.listdir(tmp_path / "new" / "sub") == []
