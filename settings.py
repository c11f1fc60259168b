"""train.py's settings from keywords and flags: checked, explained by --help, kept on resume.

Their types and their sense are checked (one line per mistake, before anything runs), `--help`
shows them in groups, and a resumed run keeps the checkpoint's.

train.Config is a dataclass of `setting(...)` fields that inherits `Settings`:

    cfg = Config.from_keywords({"epochs": 12})      # checked; UsageError naming the setting
    overrides = Config.parse_args(["--epochs", "12"])
    sys.exit(settings.cli(main, Config))            # the command line, one line per error
"""
import argparse
import dataclasses
import difflib
import json
import math
import os
import re
import shlex
import sys
from typing import Optional

import checkpoint
import gradcam
import lr_finder
from predict import MIN_MAP_SIZE, gradcam_layers
from utils import Interrupted, UsageError

# Settings that a resumed run may change; every other one must match the checkpoint's.
RESUME_FREE = {"data_dir", "out_dir", "download", "resume", "device", "precision", "compile",
               "eval_batch_size", "log_every", "plots", "progress", "gradcam_layer", "misclassified", "overwrite"}
DESCRIPTION = ("Train the custom ResNet on CIFAR-10: LR range test, one-cycle SGD, evaluation after every "
               "epoch on the data folder's test_batch, plots, a report, checkpoints.")
# The quick offline check: its own folder, so that the recipe's run into ./out follows it without a
# refusal. Its time is measured by that very command (experiments/measurements/quick_check_cpu.json);
# tests/test_docs.py holds --help, the README and the notebook to the same words.
QUICK_CHECK = "python train.py --synthetic --epochs 3 --width 16 --batch-size 128 --out-dir out/quick-check"
QUICK_CHECK_TIME = "12 s on an idle 2-core AMD EPYC CPU"
EXAMPLES = f"""examples:
  python train.py                                      # the recipe: range test, 24 epochs, report
  {QUICK_CHECK}
                                                       # offline pipeline check, {QUICK_CHECK_TIME}; no accuracy claim
  python train.py --seeds 5 --out-dir out/seeds        # seeds 0..4, then mean, std and pass rates
  python train.py --seeds 3 --sweep lr_max=0.1,0.2 --sweep label_smoothing=0,0.2 --out-dir out/sweep
                                                       # 4 settings x 3 seeds, a table per setting
  torchrun --nproc-per-node=4 train.py --seeds 8 --out-dir out/seeds
                                                       # the 8 runs spread over 4 GPUs (docs/scaling.md)
  python train.py --lr-max 0.4                         # skip the range test; LRMIN = 0.4 / {lr_finder.MIN_FACTOR:g}
  python train.py --data-dir DIR --no-download         # a cifar-10-batches-py folder you already have
  python train.py --resume out/checkpoint.pt           # continue an interrupted run"""
# Flags given once per item, joined with spaces into the setting's one string (--sweep a=1,2 --sweep b=3).
REPEATED = {"sweep": "NAME=V1,V2,..."}
METAVARS = {"data_dir": "DIR", "out_dir": "DIR", "resume": "PATH", "lr_min": "LR", "lr_max": "LR",
            "lr_test_start": "LR", "lr_test_end": "LR", "gradcam_layer": "LAYER"}


def setting(default, help, default_in_words=None, group=None):
    """A field of train.Config: its default, its --help text, the default in words where the
    value alone would not tell a reader what happens (None = found by the range test, 0 = all),
    and, on the first field of each group of --help, the group's title."""
    return dataclasses.field(default=default, metadata={"help": help, "default_in_words": default_in_words,
                                                        "group": group})


class Settings:
    """What train.Config inherits: construction from keywords, checked; --help and the flags."""

    # ----- from keywords ---------------------------------------------------------------------
    @classmethod
    def from_keywords(cls, overrides: dict):
        """The settings from keyword overrides of the defaults; unknown keys, values of the wrong
        type and values that make no sense raise UsageError naming the setting."""
        cls.check_keys_and_types(overrides)
        cfg = cls(**overrides)
        if cfg.peak_epoch is None:
            cfg.peak_epoch = cfg.epochs * 5 / 24       # the recipe's proportion: epoch 5 of 24
        validate(cfg)
        return cfg

    @classmethod
    def for_run(cls, overrides: dict):
        """(settings, checkpoint or None) for train.main(**overrides), every mistake a UsageError
        before anything runs. With `resume` (and no series): the checkpoint, read, and its settings
        with the overrides a resumed run may change."""
        cls.check_keys_and_types(overrides)
        if overrides.get("resume") and overrides.get("seeds", 1) == 1 and not overrides.get("sweep"):
            path = overrides["resume"]
            ckpt = checkpoint.read_checkpoint(path)
            return cls.resumed(ckpt["config"], overrides, path), ckpt
        return cls.from_keywords(overrides), None

    @classmethod
    def check_keys_and_types(cls, overrides):
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = [k for k in overrides if k not in fields]
        if unknown:
            hints = [f" (did you mean {m[0]!r}?)" if (m := difflib.get_close_matches(k, fields, 1)) else ""
                     for k in unknown]
            raise UsageError("unknown setting " + ", ".join(f"{k!r}{h}" for k, h in zip(unknown, hints))
                             + ". Valid settings: " + ", ".join(fields))
        for k, v in overrides.items():
            kind = fields[k].type
            ok = {bool: isinstance(v, bool),
                  int: isinstance(v, int) and not isinstance(v, bool),
                  float: isinstance(v, (int, float)) and not isinstance(v, bool),
                  Optional[float]: v is None or (isinstance(v, (int, float)) and not isinstance(v, bool)),
                  str: isinstance(v, str)}[kind]
            if not ok:
                want = {Optional[float]: "a number or None"}.get(kind, getattr(kind, "__name__", str(kind)))
                raise UsageError(f"{k} must be {want}, got {v!r} ({type(v).__name__})")

    @classmethod
    def with_defaults(cls, saved: dict) -> dict:
        """A config saved before some settings existed, completed with their defaults (each new
        setting's default is the behaviour the code had before it)."""
        return {**{f.name: f.default for f in dataclasses.fields(cls)}, **saved}

    @classmethod
    def resumed(cls, saved: dict, overrides: dict, path):
        """A resumed run's settings: the checkpoint's config `saved`, with the overrides a
        resumed run may change (RESUME_FREE); another change is refused. Without --out-dir the
        run goes on beside the checkpoint."""
        saved = cls.with_defaults(saved)
        clash = {k: v for k, v in overrides.items() if k not in RESUME_FREE and k in saved and saved[k] != v}
        if clash:
            k, v = next(iter(clash.items()))
            raise UsageError(f"--resume {path}: the checkpoint was made with {k}={saved[k]!r}, but this run "
                             f"asks for {k}={v!r}. A resumed run keeps the checkpoint's settings: drop "
                             f"--{k.replace('_', '-')}, or start a new run without --resume.")
        merged = {**saved, **{k: v for k, v in overrides.items() if k in RESUME_FREE}}
        if "out_dir" not in overrides:
            merged["out_dir"] = os.path.dirname(os.path.abspath(path))
        return cls.from_keywords(merged)

    def differs_from(self, saved: dict):
        """The first setting (name, saved value, this value) in which a saved config differs
        from this one, among those a resumed run may not change; None when there is none."""
        saved = self.with_defaults(saved)
        for k, v in dataclasses.asdict(self).items():
            if k not in RESUME_FREE and saved.get(k) != v:
                return k, saved.get(k), v
        return None

    def keywords(self) -> dict:
        """The settings that differ from the defaults, as keywords of main(): with the defaults,
        the run they describe. peak_epoch counts only where it is not the recipe's 5/24 of the
        epochs; resume and overwrite never (they say where a run starts, not what it is)."""
        out = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if f.name in ("resume", "overwrite") or (f.name == "peak_epoch" and v == self.epochs * 5 / 24):
                continue
            if v != f.default:
                out[f.name] = v
        return out

    def command(self) -> str:
        """The command line that runs with these settings (see keywords)."""
        words = ["python", "train.py"]
        for k, v in self.keywords().items():
            flag = "--" + k.replace("_", "-")
            if isinstance(v, bool):
                words.append(flag if v else "--no-" + k.replace("_", "-"))
            else:
                words += [flag, shlex.quote(repr(v) if isinstance(v, float) else str(v))]
        return " ".join(words)

    # ----- from the command line -------------------------------------------------------------
    @classmethod
    def parse_args(cls, argv) -> dict:
        """The keyword overrides a command line asks for (only the flags given)."""
        parser = _Parser(prog="train.py", usage="python train.py [--flag VALUE ...]  (every flag below)",
                         description=DESCRIPTION, epilog=EXAMPLES,
                         formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False)
        group = parser
        for f in dataclasses.fields(cls):
            if f.metadata.get("group"):
                group = parser.add_argument_group(f.metadata["group"])
            flag = "--" + f.name.replace("_", "-")
            text = f"{f.metadata['help']} (default: {default_in_words(f)})"
            if f.type is bool:
                group.add_argument(flag, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS,
                                   help=text)
            elif f.name in REPEATED:
                group.add_argument(flag, action="append", default=argparse.SUPPRESS, metavar=REPEATED[f.name],
                                   help=text)
            else:
                convert = float if f.type in (Optional[float], float) else int if f.type is int else str
                metavar = METAVARS.get(f.name, {int: "N", float: "X", str: "NAME"}[convert])
                group.add_argument(flag, type=convert, default=argparse.SUPPRESS, metavar=metavar, help=text)
        flags = vars(parser.parse_args(argv))
        return {k: " ".join(v) if k in REPEATED else v for k, v in flags.items()}


def default_in_words(f) -> str:
    """The default of a Config field as --help shows it: the field's words where it has them,
    on/off for a switch, else the value."""
    if f.metadata.get("default_in_words"):
        return f.metadata["default_in_words"]
    if f.type is bool:
        return "on" if f.default else "off"
    return str(f.default)


class _Parser(argparse.ArgumentParser):
    def error(self, message):            # one line, not the whole usage block
        hint = ""
        if message.startswith("unrecognized arguments"):
            flags = [s for a in self._actions for s in a.option_strings]
            guesses = [m[0] for w in message.split(":", 1)[1].split() if w.startswith("--")
                       if (m := difflib.get_close_matches(w.split("=")[0], flags, 1))]
            hint = f" (did you mean {', '.join(guesses)}?)" if guesses else ""
        self.exit(2, f"error: {message}{hint}. See: python train.py --help\n")


def cli(main, config_class, argv=None) -> int:
    """Run main(**flags) for the command line `argv` (sys.argv by default); one line on stderr
    and the error's exit status for every mistake a user can make (see utils.UsageError)."""
    overrides = config_class.parse_args(sys.argv[1:] if argv is None else argv)
    return in_one_line(lambda: main(**overrides), config_class)


def in_one_line(run, config_class=None) -> int:
    """run(), then 0; or, for a mistake a user can make (utils.UsageError) or Ctrl-C, one line on
    stderr, in the command line's words when config_class (train.Config) is given, and the
    error's exit status. For every command that runs the recipe (train.py, the experiments)."""
    try:
        run()
    except KeyboardInterrupt:            # outside a run: while checking settings or loading data
        print("interrupted; no training epoch was in progress", file=sys.stderr)
        return Interrupted.exit_code
    except UsageError as e:
        label = "interrupted" if isinstance(e, Interrupted) else "error"
        message = str(e).removeprefix("interrupted; ")
        print(f"{label}: {for_command_line(message, config_class) if config_class else message}", file=sys.stderr)
        return e.exit_code
    return 0


# ----------------------------------------------------------------------------------------------
# A message in the words of whoever reads it. The modules speak to main()'s caller: a setting is
# named by its flag (--out-dir), a switch by its keyword (download=True) or by both ("--overwrite
# (overwrite=True)"). The command line reads flags only; the notebook has OUT_DIR and OVERRIDES.

_SWITCH = re.compile(r"\b([a-z][a-z0-9_]*)=(True|False)\b")            # download=True
_BOTH = re.compile(r"(--[a-z][a-z0-9-]*) \(([a-z][a-z0-9_]*=(?:True|False))\)")   # --overwrite (overwrite=True)
_FLAG = re.compile(r"--(no-)?([a-z][a-z0-9-]*)(?: ([^\s;,)]+))?")         # --resume out/checkpoint.pt
_NOT_VALUES = {"or", "and", "to", "in", "on", "with", "for", "from", "of", "is", "the", "a", "an", "at", "as",
               "but", "then", "instead", "again", "first", "too", "here"}      # "another --out-dir or ..."


def _flag(name, value) -> str:
    return ("--" if value else "--no-") + name.replace("_", "-")


def for_command_line(message: str, config_class) -> str:
    """`message` for the command line: a switch named as a keyword becomes its flag
    (download=True -> --download, download=False -> --no-download), and a keyword in brackets
    after its own flag goes ("--overwrite (overwrite=True)" -> "--overwrite")."""
    switches = {f.name for f in dataclasses.fields(config_class) if f.type is bool}

    def flag(m):
        return _flag(m[1], m[2] == "True") if m[1] in switches else m[0]
    message = _BOTH.sub(lambda m: m[1] if _SWITCH.sub(flag, m[2]) == m[1] else m[0], message)
    return _SWITCH.sub(flag, message)


def for_notebook(message, config_class) -> str:
    """`message` for run.ipynb, whose settings are its Parameters cell's: --out-dir is OUT_DIR,
    every other setting a key of OVERRIDES (--overwrite or overwrite=True ->
    OVERRIDES={"overwrite": True}; --resume out/checkpoint.pt -> OVERRIDES={"resume": "out/checkpoint.pt"};
    a flag named without a value, "drop --epochs" -> 'drop OVERRIDES["epochs"]')."""
    fields = {f.name: f for f in dataclasses.fields(config_class)}
    message = _BOTH.sub(lambda m: m[2], str(message))              # one form is enough: the keyword
    message = _SWITCH.sub(lambda m: f'OVERRIDES={{"{m[1]}": {m[2]}}}' if m[1] in fields else m[0], message)

    def parameter(m):
        name, word = m[2].replace("-", "_"), m[3] or ""
        if name not in fields or (m[1] and fields[name].type is not bool):
            return m[0]
        value, end = word.rstrip(".:"), word[len(word.rstrip(".:")):]        # the sentence's punctuation
        kind = fields[name].type
        if not word or kind is bool or not (value not in _NOT_VALUES if kind is str
                                            else re.fullmatch(r"[\d.e+-]+", value)):
            value, end = None, (" " + word if word else "")                      # "--out-dir or ..."
        if m[1] or kind is bool:
            return f'OVERRIDES={{"{name}": {not m[1]}}}' + end
        if name == "out_dir":
            return "OUT_DIR" + ("" if value is None else f' = "{value}"') + end
        if value is None:
            return f'OVERRIDES["{name}"]' + end
        return f'OVERRIDES={{"{name}": {value if kind is not str else json.dumps(value)}}}' + end
    return _FLAG.sub(parameter, message)


# ----------------------------------------------------------------------------------------------
# The checks of sense, before anything runs

def validate(cfg):
    """UsageError for the first setting of train.Config that makes no sense, saying why."""
    def need(ok, msg):
        if not ok:
            raise UsageError(msg)
    need(cfg.batch_size >= 1, f"batch_size must be at least 1, got {cfg.batch_size}")
    need(cfg.eval_batch_size >= 1, f"eval_batch_size must be at least 1, got {cfg.eval_batch_size}")
    need(cfg.epochs >= 1, f"epochs must be at least 1, got {cfg.epochs}")
    need(cfg.peak_epoch > 0, f"peak_epoch must be positive, got {cfg.peak_epoch}")
    need(cfg.epochs >= cfg.peak_epoch,
         f"epochs ({cfg.epochs}) is smaller than peak_epoch ({cfg.peak_epoch}): the LR would never "
         "come down. Raise --epochs or lower --peak-epoch.")
    for name in ("lr_min", "lr_max"):
        v = getattr(cfg, name)
        need(v is None or (math.isfinite(v) and v > 0), f"{name} must be a positive number, got {v}")
    need(cfg.lr_min is None or cfg.lr_max is None or cfg.lr_min <= cfg.lr_max,
         f"lr_min ({cfg.lr_min}) is greater than lr_max ({cfg.lr_max}): LRMIN is the bottom of the cycle")
    need(0 < cfg.lr_test_start < cfg.lr_test_end,
         f"the range test needs 0 < lr_test_start < lr_test_end, got {cfg.lr_test_start}, {cfg.lr_test_end}")
    need(cfg.lr_test_iters == 0 or cfg.lr_test_iters >= 2, "lr_test_iters must be 0 (auto) or at least 2")
    need(cfg.lr_min_factor > 1, f"lr_min_factor must be greater than 1 (LRMIN < LRMAX), got {cfg.lr_min_factor}")
    need(cfg.lr_backoff >= 1, f"lr_backoff must be at least 1, got {cfg.lr_backoff}")
    need(cfg.lr_rise > 0, f"lr_rise must be positive, got {cfg.lr_rise}")
    need(cfg.precision in ("auto", "fp32", "bf16", "fp16"),
         f"precision must be auto, fp32, bf16 or fp16, got {cfg.precision!r}")
    need(cfg.device.split(":")[0] in ("auto", "cpu", "cuda", "mps"),
         f"device must be auto, cpu, cuda, cuda:N or mps, got {cfg.device!r}")
    need(cfg.pad_mode in ("reflect", "zeros"), f"pad_mode must be reflect or zeros, got {cfg.pad_mode!r}")
    need(0 <= cfg.cutout <= 32, f"cutout must be between 0 and 32 pixels, got {cfg.cutout}")
    need(cfg.width >= 1, f"width must be at least 1, got {cfg.width}")
    need(cfg.subset >= 0, f"subset must be 0 (all) or positive, got {cfg.subset}")
    need(cfg.synthetic_train >= 1 and cfg.synthetic_test >= 1, "synthetic sizes must be positive")
    need(0 <= cfg.momentum < 1, f"momentum must lie in [0, 1), got {cfg.momentum}: at 1 or more the steps never "
         "fade and training diverges (the recipe uses 0.9)")
    need(cfg.momentum > 0 or not cfg.nesterov, "Nesterov momentum needs momentum > 0: give --momentum "
         "above 0, or --no-nesterov")
    need(cfg.weight_decay >= 0, f"weight_decay must be at least 0, got {cfg.weight_decay}")
    need(0 <= cfg.seed < 2**32, f"seed must lie in 0 .. 2**32 - 1, got {cfg.seed}")
    need(1 <= cfg.seeds <= 2**32 - cfg.seed, f"seeds must be at least 1 (and seed + seeds at most 2**32), "
         f"got {cfg.seeds}")
    need(cfg.ema_epochs >= 0, f"ema_epochs must be 0 (off) or positive, got {cfg.ema_epochs}")
    need(0 <= cfg.label_smoothing < 1, f"label_smoothing must lie in [0, 1), got {cfg.label_smoothing}")
    need(cfg.log_every >= 1, f"log_every must be at least 1, got {cfg.log_every}")
    need(0 <= cfg.misclassified <= 100, f"misclassified must lie in 0..100, got {cfg.misclassified}")
    layers = gradcam_layers()
    need(cfg.gradcam_layer in layers, gradcam.unknown_layer(cfg.gradcam_layer, layers))


def warnings(cfg, device_type="cuda") -> list:
    """Settings that run but that a user should hear about first, one line each; `device_type`
    is the type of the device the run got ("cpu", "cuda", "mps")."""
    said = []
    if device_type == "cpu" and not cfg.synthetic:
        said.append("note: on a CPU the full recipe takes hours (minutes on a GPU; docs/performance.md); the "
                    f"expected time follows the first steps. To check the pipeline first ({QUICK_CHECK_TIME}): "
                    + QUICK_CHECK)
    h, w = gradcam_layers()[cfg.gradcam_layer]
    if cfg.plots and min(h, w) < MIN_MAP_SIZE:
        said.append(f"warning: Grad-CAM at {cfg.gradcam_layer} gives a {h}x{w} map; the course's graders refuse maps "
                    f"from a channel under {MIN_MAP_SIZE}x{MIN_MAP_SIZE} pixels: use --gradcam-layer layer2 "
                    "(8x8) or layer1 (16x16) for an assignment")
    return said
