"""checkpoint.py: what a run keeps, and what is refused when it is read back: missing, garbage,
foreign, hostile and misfitting files each get one clear UsageError and run nothing."""
import json
import os
import subprocess
import sys

import pytest
import torch

import checkpoint
import train
import weights
from custom_resnet import CLASSES, CustomResNet
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
    final = weights.read_weights(str(out / "model.pt"), "give a model.pt")
    ckpt = torch.load(out / "checkpoint.pt", weights_only=True)
    assert final.keys() == ckpt["model"].keys()
    assert all(torch.equal(final[k], ckpt["model"][k]) and final[k].device.type == "cpu" for k in final)


def test_model_pt_says_what_it_was_trained_on_and_still_loads_as_a_plain_state_dict(finished):
    """The provenance travels inside model.pt (its state_dict's _metadata): the data, the split and
    accuracy of the weights it holds, the width, the classes, the commit; and a student's
    model.load_state_dict(torch.load("model.pt")) works as with a bare state_dict."""
    out, record = finished
    for weights_only in (True, False):                     # torch.load's default has changed over versions
        state = torch.load(out / "model.pt", weights_only=weights_only)
        assert str(CustomResNet(width=8).load_state_dict(state)) == "<All keys matched successfully>"
    found, problem = weights.provenance(weights.read_weights(str(out / "model.pt"), "give a model.pt"))
    last = record["history"][-1]
    assert problem == "" and found == {
        "format": weights.PROVENANCE_FORMAT, "source": "synthetic", "train_images": TINY["synthetic_train"],
        "split": "test", "accuracy": record["test_accuracy"], "correct": record["test_correct"], "n": last["test_n"],
        "width": 8, "epochs": 1, "classes": list(CLASSES), "commit": record["code"]["git_commit"]}
    assert last["test_n"] == TINY["synthetic_test"] and found["accuracy"] == last["test_acc"]


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
    assert out.stderr.count("\n") == 1 and "it holds more than tensors" in out.stderr, out.stderr
    assert "weights_only" not in out.stderr                   # torch's advice to load it unchecked: never


def test_a_checkpoint_of_another_architecture_is_refused(tmp_path):
    train.main(**TINY, out_dir=str(tmp_path))
    path = tmp_path / "checkpoint.pt"
    ckpt = torch.load(path, weights_only=True)
    ckpt["model"] = CustomResNet(width=16).state_dict()      # weights that do not fit width=8
    torch.save(ckpt, path)
    with pytest.raises(UsageError, match="do not fit CustomResNet"):
        train.main(resume=str(path))


# ----------------------------------------------------------------------------------------------
# Verified on every read: checksums, entries, finite values, counters

def flip_a_bit_of_the_largest_tensor(path):
    """Flip one bit in the middle of the data of the archive's largest member (a tensor's bytes,
    which the member's CRC-32 covers; a bit of padding between members would change nothing)."""
    import struct
    import zipfile
    with zipfile.ZipFile(path) as z:
        info = max(z.infolist(), key=lambda i: i.file_size)
    blob = bytearray(path.read_bytes())
    name_len, extra_len = struct.unpack("<HH", blob[info.header_offset + 26:info.header_offset + 30])
    start = info.header_offset + 30 + name_len + extra_len
    blob[start + info.file_size // 2] ^= 0x08
    path.write_bytes(bytes(blob))


def files_of(folder):
    """{name: bytes} of a folder: to see that a refusal changed nothing."""
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def refused(path, match, capsys):
    """The checkpoint is refused by main() and by the command line in one line, exit 2, and the
    folder it lies in is left exactly as it was."""
    before = files_of(path.parent)
    with pytest.raises(UsageError, match=match):
        train.main(resume=str(path))
    out = subprocess.run([sys.executable, "train.py", "--resume", str(path)], cwd=ROOT, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and "Traceback" not in out.stderr, out.stderr
    assert files_of(path.parent) == before


@pytest.fixture
def a_checkpoint(finished, tmp_path):
    out, _ = finished
    (tmp_path / "run").mkdir()
    path = tmp_path / "run" / "checkpoint.pt"
    path.write_bytes((out / "checkpoint.pt").read_bytes())
    return path


def test_a_flipped_bit_is_refused_by_the_archives_checksum(a_checkpoint, capsys):
    flip_a_bit_of_the_largest_tensor(a_checkpoint)
    refused(a_checkpoint, "a damaged file", capsys)


@pytest.mark.parametrize("where", ["model", "average", "momentum"])
def test_non_finite_weights_or_momentum_are_refused(a_checkpoint, capsys, where):
    ckpt = torch.load(a_checkpoint, weights_only=True)
    if where == "model":
        ckpt["model"]["layer1.conv.bn.running_var"][0] = float("inf")
    elif where == "average":
        ckpt["average"] = {k: v.clone() for k, v in ckpt["model"].items()}
        ckpt["average"]["fc.weight"][0, 0] = float("nan")
    else:
        next(iter(ckpt["optimizer"]["state"].values()))["momentum_buffer"][0, 0, 0, 0] = float("nan")
    torch.save(ckpt, a_checkpoint)
    refused(a_checkpoint, "holds non-finite values", capsys)


@pytest.mark.parametrize("change, says", [
    (lambda c: c.pop("rng"), "no entry 'rng'"),
    (lambda c: c.update(epoch="1"), "'epoch' is a str"),
    (lambda c: c.update(history=None), "'history' is a NoneType"),
    (lambda c: c.update(model=[1, 2]), "'model' is a list"),
    (lambda c: c.update(rng={}), "its random state or optimizer state is not one"),
    (lambda c: c.update(epoch=5), "its counters disagree"),              # an old accuracy reported as final
    (lambda c: c.update(loader_epoch=0), "its counters disagree"),
    (lambda c: c.update(step=3), "its step counter"),
    (lambda c: c["rng"].update(torch=torch.zeros(10, dtype=torch.uint8)), "its random state"),
    (lambda c: c.update(lr_max=float("nan")), "not 0 < LRMIN <= LRMAX"),
    (lambda c: c.update(lr_min=-1.0), "not 0 < LRMIN <= LRMAX"),
    (lambda c: c["history"][0].pop("train_seconds"), "a history entry without the numbers of an epoch"),
    (lambda c: c["history"][0].update(test_acc="91"), "a history entry without the numbers of an epoch"),
    (lambda c: c.update(lr_range_test={"rule": "x"}), "its range test is not one"),
])
def test_a_malformed_or_altered_checkpoint_is_refused_naming_what_is_wrong(a_checkpoint, capsys, change, says):
    ckpt = torch.load(a_checkpoint, weights_only=True)
    change(ckpt)
    torch.save(ckpt, a_checkpoint)
    refused(a_checkpoint, says, capsys)


# ----------------------------------------------------------------------------------------------
# A run's record read back: every field its readers use checked, or one line naming it

@pytest.mark.parametrize("change, says", [
    (lambda r: [r], "a JSON list, not an object"),
    (lambda r: {k: v for k, v in r.items() if k != "config"}, "its 'config' is missing"),
    (lambda r: {**r, "status": "done"}, "its 'status' is \"done\", not one of running, complete"),
    (lambda r: {**r, "test_accuracy": "93.1"}, "its 'test_accuracy' is \"93.1\", not its last epoch's test_acc"),
    (lambda r: {**r, "test_accuracy": 99.0}, "its 'test_accuracy' is 99.0, not its last epoch's test_acc"),
    (lambda r: {**r, "history": [{**r["history"][0], "test_acc": "50"}]}, "its 'history' is"),
    (lambda r: {**r, "data": [1]}, "its 'data' is [1], not its data"),
    (lambda r: {**r, "lr_max": float("nan")}, "its 'lr_max' is NaN, not a number >= lr_min"),
    (lambda r: {**r, "timings": {"train_seconds": -1}}, "its 'timings' is"),
    (lambda r: {**r, "runtime": None}, "its 'runtime' is null"),
])
def test_a_record_read_back_names_the_field_that_is_wrong(finished, tmp_path, change, says):
    out, _ = finished
    good = json.loads((out / "metrics.json").read_text())
    assert checkpoint.read_record(str(out / "metrics.json"), "do this") == good
    path = tmp_path / "metrics.json"
    path.write_text(json.dumps(change(good)))
    with pytest.raises(UsageError) as e:
        checkpoint.read_record(str(path), "do this")
    message = str(e.value)
    assert message.startswith(f"{path}: not a record of a run as train.py writes it (") and says in message, message
    assert message.endswith("; do this") and "\n" not in message


def test_a_record_of_a_run_that_has_not_finished_needs_no_accuracy():
    assert checkpoint.record_problem({"status": "interrupted", "config": {"width": 8}, "history": [], "data": None,
                                      "runtime": None, "timings": {}, "code": None}) == ""
