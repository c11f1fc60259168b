"""weights.py: torch files read back verified: missing, foreign, damaged and non-finite files
each refused in one UsageError; the checksums that torch.load does not check."""
import ast
import os

import pytest
import torch

import train
import weights
from test_checkpoint import TINY, flip_a_bit_of_the_largest_tensor
from utils import UsageError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    train.main(**TINY, out_dir=str(out))
    return out


def test_reading_a_torch_file_refuses_what_is_not_one_in_one_line(tmp_path):
    with pytest.raises(UsageError, match="x.pt: no such file; give one"):
        weights.load_torch_file(str(tmp_path / "x.pt"), "x.pt", "thing", "give one")
    (tmp_path / "bad.pt").write_bytes(b"\x00" * 10)
    with pytest.raises(UsageError, match="not a readable thing"):
        weights.load_torch_file(str(tmp_path / "bad.pt"), "bad.pt", "thing", "give one")


def test_weights_are_verified_checksums_and_finite_values(run_folder, tmp_path):
    out = run_folder
    state = torch.load(out / "model.pt", weights_only=True)
    state["fc.weight"][0, 0] = float("nan")
    torch.save(state, tmp_path / "nan.pt")
    with pytest.raises(UsageError, match=r"broken weights \(fc.weight holds NaN or inf\)"):
        weights.read_weights(str(tmp_path / "nan.pt"), "retrain")
    (tmp_path / "flipped.pt").write_bytes((out / "model.pt").read_bytes())
    flip_a_bit_of_the_largest_tensor(tmp_path / "flipped.pt")
    with pytest.raises(UsageError, match="a damaged file"):
        weights.read_weights(str(tmp_path / "flipped.pt"), "retrain")


def test_first_non_finite_names_the_tensor_and_ignores_integers():
    state = {"a": torch.ones(3), "b": {"c": torch.tensor([1.0, float("inf")])}, "n": torch.tensor(7)}
    assert weights.first_non_finite(state) == "b.c"
    assert weights.first_non_finite({"a": torch.ones(2), "n": torch.tensor(3)}) == ""
    assert weights.first_non_finite({}) == ""


def test_a_checkpoint_given_as_weights_says_which_file_to_give(run_folder):
    with pytest.raises(UsageError, match="is a training checkpoint.*model.pt"):
        weights.read_weights(str(run_folder / "checkpoint.pt"), "give a model.pt")
    state = weights.read_weights(str(run_folder / "model.pt"), "give a model.pt")
    assert all(isinstance(v, torch.Tensor) and v.device.type == "cpu" for v in state.values())


def test_no_torch_file_is_read_outside_weights_py():
    """Every torch file is read through weights.read_torch_file (checksums, weights_only, one line
    naming the file): a bare torch.load anywhere else in the code would skip all of it."""
    found = []
    for folder, dirs, files in os.walk(ROOT):
        dirs[:] = [d for d in dirs if not d.startswith(".") and d != "tests"]       # tests read what they wrote
        for name in files:
            path = os.path.join(folder, name)
            if not name.endswith(".py") or path == os.path.join(ROOT, "weights.py"):
                continue
            for node in ast.walk(ast.parse(open(path, encoding="utf-8").read())):
                if (isinstance(node, ast.Attribute) and ast.unparse(node) in ("torch.load", "torch.serialization.load")
                        or isinstance(node, ast.ImportFrom) and node.module in ("torch", "torch.serialization")
                        and any(a.name == "load" for a in node.names)):
                    found.append(f"{os.path.relpath(path, ROOT)}:{node.lineno}")
    assert found == []

