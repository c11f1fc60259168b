"""settings.py: train.py's settings from keywords and flags, their checks of sense (one line per
mistake, before anything runs), --help, and the rules of a resumed run."""
import dataclasses
import os
import subprocess
import sys

import pytest
import torch

import settings
import train
import utils
from utils import UsageError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_cli(*args, timeout=120):
    return subprocess.run([sys.executable, "train.py", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)


# ----------------------------------------------------------------------------------------------
# Keywords

def test_unknown_keyword_of_main_is_rejected_with_a_suggestion():
    with pytest.raises(UsageError, match="'epoch'.*did you mean 'epochs'"):
        train.main(epoch=3)


def test_resume_with_an_unknown_setting_is_rejected_before_reading_the_file(tmp_path):
    with pytest.raises(UsageError, match="'batch_sise'.*did you mean 'batch_size'"):
        train.main(resume=str(tmp_path / "checkpoint.pt"), batch_sise=7)


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
    (dict(momentum=1.0), r"momentum must lie in \[0, 1\), got 1.0: at 1 or more the steps never fade"),
    (dict(momentum=1.5, nesterov=False), r"momentum must lie in \[0, 1\)"),
    (dict(misclassified=-1), "misclassified must lie in 0..100"),
    (dict(weight_decay=-1e-4), "weight_decay must be at least 0"),
    (dict(seed=2**62), "seed must lie in"),
    (dict(gradcam_layer="layer 3"), r"unknown Grad-CAM layer 'layer 3' \(did you mean 'layer3'"),
])
def test_bad_settings_raise_usage_error(overrides, message):
    with pytest.raises(UsageError, match=message):
        train.Config.from_keywords(overrides)


def test_a_config_saved_before_a_setting_existed_gets_its_default_and_clashes_are_found():
    cfg = train.Config.from_keywords({"epochs": 3})
    old = {k: v for k, v in dataclasses.asdict(cfg).items() if k != "ema_epochs"}
    assert train.Config.with_defaults(old)["ema_epochs"] == 0.0
    assert cfg.differs_from(old) is None
    assert cfg.differs_from({**old, "epochs": 4}) == ("epochs", 4, 3)
    assert cfg.differs_from({**old, "out_dir": "elsewhere", "plots": False}) is None     # free to change


def test_a_resumed_run_keeps_the_checkpoints_settings_but_may_change_where_it_writes(tmp_path):
    saved = dataclasses.asdict(train.Config.from_keywords({"epochs": 3, "width": 8}))
    path = str(tmp_path / "run" / "checkpoint.pt")
    cfg = train.Config.resumed(saved, {"resume": path, "plots": False}, path)
    assert (cfg.epochs, cfg.width, cfg.plots, cfg.out_dir) == (3, 8, False, str(tmp_path / "run"))
    with pytest.raises(UsageError, match="made with epochs=3, but this run asks for epochs=5"):
        train.Config.resumed(saved, {"resume": path, "epochs": 5}, path)


# ----------------------------------------------------------------------------------------------
# The command line

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
    groups = [f.name for f in dataclasses.fields(train.Config) if f.metadata.get("group")]
    assert groups[0] == dataclasses.fields(train.Config)[0].name and len(groups) == 5
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
        train.Config.parse_args(argv)             # SystemExit on a flag that no longer exists
    # the LRMIN it promises for --lr-max 0.4 is the one such a run uses
    line = next(line for line in examples.splitlines() if "--lr-max 0.4" in line)
    promised = 0.4 / float(line.split("/")[-1])
    cfg = train.Config.from_keywords(train.Config.parse_args(["--lr-max", "0.4"]))
    lr_min, lr_max, _, _ = train.find_lrs(cfg, None, None)
    assert (lr_min, lr_max) == (pytest.approx(promised), 0.4)


def test_flags_become_keywords_of_their_types_and_only_those_given():
    assert train.Config.parse_args([]) == {}
    got = train.Config.parse_args(["--epochs", "3", "--lr-max", "0.5", "--no-nesterov", "--out-dir", "x"])
    assert got == {"epochs": 3, "lr_max": 0.5, "nesterov": False, "out_dir": "x"}


def test_unknown_flag_is_one_clear_line():
    out = run_cli("--epoch", "3")
    assert out.returncode == 2
    assert "unrecognized arguments: --epoch" in out.stderr and "Traceback" not in out.stderr
    assert "did you mean --epochs?" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


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


def test_the_cli_gives_each_error_its_exit_status(capsys):
    def diverges(**kw):
        raise utils.Diverged("the loss became non-finite")
    assert settings.cli(diverges, train.Config, []) == 3
    assert capsys.readouterr().err == "error: the loss became non-finite\n"

    def interrupted(**kw):
        raise KeyboardInterrupt
    assert settings.cli(interrupted, train.Config, []) == 130


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
    # The command line names its flag; from Python the same message names the keyword.
    assert "(--download, the default)" in out.stderr and "download=True" not in out.stderr
    with pytest.raises(UsageError, match=r"\(download=True, the default\)"):
        train.main(data_dir=str(tmp_path / "none"), download=False, out_dir=str(tmp_path / "p"))


def refusal(tmp_path):
    """The message of a run refused for a folder that holds an interrupted run, from main()."""
    (tmp_path / "checkpoint.pt").write_bytes(b"an earlier run's checkpoint")
    with pytest.raises(UsageError) as e:
        train.main(synthetic=True, device="cpu", out_dir=str(tmp_path))
    return str(e.value)


def test_a_refusal_names_the_flags_on_the_command_line_and_the_parameters_in_the_notebook(tmp_path, capsys):
    said = refusal(tmp_path)
    assert "--out-dir" in said and "--overwrite (overwrite=True)" in said          # main(): both forms
    assert settings.cli(lambda **kw: train.main(**kw), train.Config,
                        ["--synthetic", "--device", "cpu", "--out-dir", str(tmp_path)]) == 2
    line = capsys.readouterr().err
    assert line == f"error: {said.replace(' (overwrite=True)', '')}\n"
    assert line.count("\n") == 1 and "=True" not in line
    notebook = settings.for_notebook(said, train.Config)
    assert notebook == said.replace("--resume ", 'OVERRIDES={"resume": "', 1).replace(
        "checkpoint.pt;", 'checkpoint.pt"};', 1).replace("another --out-dir", "another OUT_DIR").replace(
        "add --overwrite (overwrite=True)", 'add OVERRIDES={"overwrite": True}')
    assert "--" not in notebook


@pytest.mark.parametrize("message, command_line, notebook", [
    ("Allow the download (download=True, the default), or run offline with --synthetic.",
     "Allow the download (--download, the default), or run offline with --synthetic.",
     'Allow the download (OVERRIDES={"download": True}, the default), or run offline with '
     'OVERRIDES={"synthetic": True}.'),
    ("forbid it with download=False; nesterov=True", "forbid it with --no-download; --nesterov",
     'forbid it with OVERRIDES={"download": False}; OVERRIDES={"nesterov": True}'),
    ("drop --epochs, or start a new run without --resume.", None,
     'drop OVERRIDES["epochs"], or start a new run without OVERRIDES["resume"].'),
    ("try --batch-size 256, or --device cpu or --no-nesterov", None,
     'try OVERRIDES={"batch_size": 256}, or OVERRIDES={"device": "cpu"} or OVERRIDES={"nesterov": False}'),
    ("give another --out-dir or delete it; --out-dir /tmp/x.", None,
     'give another OUT_DIR or delete it; OUT_DIR = "/tmp/x".'),
    ("epochs=3 and cache=True and --help stay", None, None),
])
def test_messages_are_worded_for_the_command_line_and_for_the_notebook(message, command_line, notebook):
    """A keyword that is no setting (cache=True), a number (epochs=3) and a flag that is no setting
    (--help) are left as they are."""
    assert settings.for_command_line(message, train.Config) == (command_line or message)
    assert settings.for_notebook(message, train.Config) == (notebook or message)


def test_on_a_cpu_the_run_says_first_that_the_recipe_takes_hours_and_names_the_quick_check():
    cfg = train.Config.from_keywords({})
    said = settings.warnings(cfg, "cpu")
    assert len(said) == 1 and "the full recipe takes hours" in said[0] and said[0].endswith(settings.QUICK_CHECK)
    assert settings.warnings(cfg, "cuda") == []
    assert settings.warnings(train.Config.from_keywords({"synthetic": True}), "cpu") == []   # a check already
    # The quick check writes a folder of its own: the recipe's run into the default ./out follows it.
    assert train.Config.parse_args(settings.QUICK_CHECK.split()[2:])["out_dir"] != train.Config.out_dir


def test_a_truncated_batch_file_is_a_clear_error_from_the_cli(tmp_path):
    from cifar_files import write_cifar_folder
    write_cifar_folder(tmp_path, n_per_batch=2)
    path = tmp_path / "cifar-10-batches-py" / "data_batch_3"
    path.write_bytes(path.read_bytes()[:100])
    out = run_cli("--data-dir", str(tmp_path), "--no-download", "--out-dir", str(tmp_path / "o"))
    assert out.returncode == 2 and "data_batch_3" in out.stderr and "Traceback" not in out.stderr


def test_the_grad_cam_layers_offered_are_the_networks_feature_maps():
    layers = settings.gradcam_layers()
    assert {"prep": (32, 32), "layer1": (16, 16), "layer2": (8, 8), "layer3": (4, 4)}.items() <= layers.items()
    assert "layer1.res.conv2" in layers and "layer3.conv.pool" in layers
    assert "pool" not in layers and "fc" not in layers
