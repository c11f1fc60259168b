"""Train the custom ResNet on CIFAR-10: LR range test, one-cycle SGD, evaluation after every epoch
on the data folder's test_batch (the 10,000 CIFAR-10 test images when downloaded), plots, a
metrics file, checkpoints.

    python train.py                          # the full recipe (downloads CIFAR-10 to ./data)
    python train.py --synthetic --epochs 3 --width 16 --batch-size 128   # offline check, any CPU
    python train.py --seeds 5                # the recipe for seeds 0..4, then their statistics
    python train.py --help                   # every flag

    import train; results = train.main(epochs=24)   # from Python or a notebook

Everything a run measures goes to `<out_dir>/metrics.json` and is returned by `main()`; with
--seeds N each run goes to `<out_dir>/seed-<s>/` and the statistics to `<out_dir>/summary.json`.
"""
import argparse
import copy
import dataclasses
import difflib
import json
import math
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

import data as cifar
import lr_finder
import series
import utils
from custom_resnet import CustomResNet
from utils import UsageError


def opt(default, help, default_in_words=None):
    """A Config field: its default, its --help text, and the default in words where the value
    alone would not tell a reader what happens (None = found by the range test, 0 = all, ...)."""
    return field(default=default, metadata={"help": help, "default_in_words": default_in_words})


# ==============================================================================================
# Hyperparameters: each is a keyword of main() and a flag (lr_max -> --lr-max). Defaults are the
# recipe of docs/SPEC.md: 24 epochs at batch 512, one-cycle LR peaking at the end of epoch 5,
# SGD with Nesterov momentum, LRMIN and LRMAX found by an LR range test. The five sections are
# the groups of `python train.py --help` (HELP_GROUPS names the first field of each).

@dataclass
class Config:
    # --- recipe: schedule (one cycle, per step; docs/SPEC.md section 2), optimizer, model, seeds
    epochs: int = opt(24, "training epochs; at least peak_epoch")
    peak_epoch: Optional[float] = opt(None, "the LR rises linearly to LRMAX at the end of this epoch, then "
                                      "falls", "5/24 of the epochs, 5 of 24")
    batch_size: int = opt(512, "training images per step (the last incomplete batch is dropped)")
    lr_min: Optional[float] = opt(None, "LRMIN, start and end of the cycle (giving it skips the range test)",
                                  "LRMAX / lr_min_factor")
    lr_max: Optional[float] = opt(None, "LRMAX, the peak LR (giving it skips the range test)",
                                  "found by the LR range test")
    momentum: float = opt(0.9, "SGD momentum")
    nesterov: bool = opt(True, "Nesterov momentum (--no-nesterov for heavy-ball)")
    weight_decay: float = opt(5e-4, "L2 weight decay, on every parameter unless --no-bn-weight-decay "
                              "(Page's ResNet-9: every parameter)")
    bn_weight_decay: bool = opt(True, "weight decay on BatchNorm's scales and shifts too, as in Page's "
                                "ResNet-9 (--no-bn-weight-decay: on the conv and FC weights only)")
    label_smoothing: float = opt(0.0, "label smoothing of the loss (Page's final version uses 0.2)", "0, none")
    ema_epochs: float = opt(0.0, "evaluate an exponential moving average of the weights (and BatchNorm "
                            "statistics) with this time constant in epochs, instead of the trained weights "
                            "(Page's bag of tricks)", "0, off")
    width: int = opt(64, "channels of the prep layer (64 = the specification; small for quick tests)")
    seed: int = opt(0, "seed of the weights and the data order; CPU fp32 runs are bit-reproducible")
    seeds: int = opt(1, "run the whole recipe (range test included) for seeds seed .. seed+N-1, each in "
                     "<out_dir>/seed-<s>/, then write <out_dir>/summary.json; the same command again "
                     "continues an interrupted series", "1, one run")
    # --- LR range test (lr_finder.py); runs only when lr_max and lr_min are both None
    lr_test_iters: int = opt(0, "steps of the range test", "0, auto: one epoch's steps, clamped to 20..100")
    lr_test_start: float = opt(1e-3, "first LR of the range test")
    lr_test_end: float = opt(10.0, "last LR of the range test (grows exponentially from the first)")
    lr_backoff: float = opt(lr_finder.BACKOFF, "LRMAX = the LR at the first minimum of the smoothed loss / "
                            "lr_backoff (lr_finder.py; chosen on real CIFAR-10 images, docs/lr-rule.md)")
    lr_min_factor: float = opt(lr_finder.MIN_FACTOR, "LRMIN = LRMAX / lr_min_factor (Smith: 10-20 "
                               "for one cycle; 20 trained better than 10 on real images, docs/lr-rule.md)")
    lr_rise: float = opt(lr_finder.RISE, "the range test's loss has turned up once its smoothed value is this "
                         "fraction above its lowest (0.05: 5 percent); later dips are ignored")
    # --- data and augmentation (training only: RandomCrop(32, padding=4) >> FlipLR >> Cutout)
    data_dir: str = opt("./data", "folder with cifar-10-batches-py (downloaded there if missing)")
    download: bool = opt(True, "download CIFAR-10 when it is missing (--no-download forbids it)")
    synthetic: bool = opt(False, "use offline synthetic data of CIFAR-10's shape instead of CIFAR-10: "
                          "checks the pipeline, says nothing about accuracy on CIFAR-10")
    synthetic_train: int = opt(2560, "number of synthetic training images (with --synthetic)")
    synthetic_test: int = opt(1000, "number of synthetic test images (with --synthetic)")
    subset: int = opt(0, "keep only the first N training and the first N held-out images", "0, all")
    pad_mode: str = opt("reflect", "padding of the random crop: reflect (Page, airbench) or zeros (torchvision)")
    cutout: int = opt(8, "side of the Cutout square in pixels (0: no Cutout)")
    cutout_inside: bool = opt(False, "keep the Cutout square whole inside the image, always cutout^2 pixels "
                              "(Page's cifar10-fast); off: its centre anywhere, the square clipped at the "
                              "border (DeVries & Taylor)")
    # --- output and reports
    out_dir: str = opt("./out", "where metrics.json, model.pt, checkpoint.pt and the plots go")
    resume: str = opt("", "path of a checkpoint.pt to continue from, exactly where it stopped",
                      "none, a new run")
    tta: bool = opt(False, "flip test-time augmentation: evaluate on the mean of the logits of each image "
                    "and its mirror image (off in the specification's recipe)")
    gradcam_layer: str = opt("layer3", "where gradcam.png's maps are taken: prep (32x32), layer1 (16x16), "
                             "layer2 (8x8), layer3 (4x4), or a part inside them such as layer1.res")
    eval_batch_size: int = opt(1000, "held-out images per evaluation batch")
    log_every: int = opt(10, "read the running loss/accuracy from the device every N steps")
    plots: bool = opt(True, "save the plots at the end of the run (--no-plots skips them)")
    progress: bool = opt(True, "show a progress bar per epoch (--no-progress for plain logs)")
    # --- device and precision
    device: str = opt("auto", "auto | cpu | cuda | cuda:N | mps", "auto, CUDA, else MPS, else the CPU")
    precision: str = opt("auto", "auto | fp32 | bf16 | fp16",
                         "auto, bf16 where supported, fp16 with a grad scaler on older GPUs, else fp32")
    compile: bool = opt(False, "torch.compile the model (compile time is reported separately)")


# The groups of --help, each named by its first field in Config (the fields in between follow).
HELP_GROUPS = {"epochs": "recipe", "lr_test_iters": "LR range test (runs when neither LR is given)",
               "data_dir": "data and augmentation", "out_dir": "output and reports",
               "device": "device and precision"}


# Settings that a resumed run may change; every other one must match the checkpoint's.
RESUME_FREE = {"data_dir", "out_dir", "download", "resume", "device", "precision", "compile",
               "eval_batch_size", "log_every", "plots", "progress", "gradcam_layer"}
CHECKPOINT_FORMAT = "custom-resnet-cifar10 checkpoint v1"


class Interrupted(UsageError):
    exit_code = 130      # the shell's convention for "stopped by SIGINT"


class Diverged(UsageError):
    exit_code = 3


def check_keys_and_types(overrides):
    """Unknown keys and values of the wrong type raise UsageError naming the setting."""
    fields = {f.name: f for f in dataclasses.fields(Config)}
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


def make_config(overrides) -> Config:
    """Config from keyword overrides; unknown keys and bad values raise UsageError."""
    check_keys_and_types(overrides)
    cfg = Config(**overrides)
    if cfg.peak_epoch is None:
        cfg.peak_epoch = cfg.epochs * 5 / 24       # the recipe's proportion: epoch 5 of 24
    validate(cfg)
    return cfg


def validate(cfg: Config):
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
    need(cfg.momentum >= 0, f"momentum must be at least 0, got {cfg.momentum}")
    need(cfg.momentum > 0 or not cfg.nesterov, "Nesterov momentum needs momentum > 0: give --momentum "
         "above 0, or --no-nesterov")
    need(cfg.weight_decay >= 0, f"weight_decay must be at least 0, got {cfg.weight_decay}")
    need(0 <= cfg.seed < 2**32, f"seed must lie in 0 .. 2**32 - 1, got {cfg.seed}")
    need(1 <= cfg.seeds <= 2**32 - cfg.seed, f"seeds must be at least 1 (and seed + seeds at most 2**32), "
         f"got {cfg.seeds}")
    need(cfg.ema_epochs >= 0, f"ema_epochs must be 0 (off) or positive, got {cfg.ema_epochs}")
    need(0 <= cfg.label_smoothing < 1, f"label_smoothing must lie in [0, 1), got {cfg.label_smoothing}")
    need(cfg.log_every >= 1, f"log_every must be at least 1, got {cfg.log_every}")
    need(cfg.gradcam_layer in gradcam_layers(), unknown_layer(cfg.gradcam_layer))


## The map sizes of the four stages for a 32x32 input (custom_resnet.py's layer table).
MAP_SIZES = {"prep": 32, "layer1": 16, "layer2": 8, "layer3": 4}


def gradcam_layers() -> list:
    """Where Grad-CAM can be drawn: every part of CustomResNet whose output is a feature map
    (N, C, h, w) with more than one pixel: prep, layer1, layer2, layer3 and the parts inside them
    ("layer1.res", "layer3.conv.bn", ...). Not pool (1x1) or fc (no map)."""
    return [n for n, _ in CustomResNet(width=1).named_modules() if n.split(".")[0] in MAP_SIZES]


def unknown_layer(name) -> str:
    stages = ", ".join(f"{k} ({v}x{v})" for k, v in MAP_SIZES.items())
    inside = ", ".join(n for n in gradcam_layers() if "." in n)
    near = difflib.get_close_matches(str(name), gradcam_layers(), 1)
    hint = f" (did you mean {near[0]!r}?)" if near else ""
    return f"unknown Grad-CAM layer {name!r}{hint}; valid: {stages}, or a part inside them: {inside}"


# ==============================================================================================
# The one-cycle schedule: a pure function of the step

def one_cycle_lr(step, total_steps, peak_step, lr_min, lr_max):
    """LR for optimizer step `step` (0-based) of `total_steps`.

    Linear from lr_min at step 0 up to lr_max at `peak_step`, then linear down to lr_min at the
    last step (total_steps - 1); never below lr_min ("no annihilation"). With
    peak_step = peak_epoch * steps_per_epoch - 1 this equals torch's
    OneCycleLR(max_lr=lr_max, total_steps=total_steps, pct_start=peak_epoch / epochs,
    anneal_strategy="linear", div_factor=lr_max / lr_min, final_div_factor=1, three_phase=False)
    at every step it is used for: the knots are those of Page's PiecewiseLinear([0, 5, 24]).
    """
    if step <= peak_step:
        return lr_max if peak_step <= 0 else lr_min + (lr_max - lr_min) * step / peak_step
    down = total_steps - 1 - peak_step
    if down <= 0:
        return lr_max
    return max(lr_min, lr_max + (lr_min - lr_max) * (step - peak_step) / down)


# ==============================================================================================
# Data and model

def load_data(cfg: Config) -> cifar.Cifar10:
    if cfg.synthetic:
        d = cifar.synthetic_cifar10(cfg.synthetic_train, cfg.synthetic_test, seed=cfg.seed)
    else:
        d = cifar.load_cifar10(cfg.data_dir, download=cfg.download)
    if cfg.subset:
        n = cfg.subset
        d = d._replace(train_images=d.train_images[:n], train_labels=d.train_labels[:n],
                       test_images=d.test_images[:n], test_labels=d.test_labels[:n])
    return d


def build(cfg: Config, rt: utils.Runtime):
    torch.manual_seed(cfg.seed)
    model = CustomResNet(num_classes=10, width=cfg.width)
    # channels_last (NHWC): the layout the tensor cores and oneDNN convolutions run natively.
    model = model.to(rt.device, memory_format=torch.channels_last)
    params = list(model.parameters())
    if not cfg.bn_weight_decay:
        ## BatchNorm's scale and shift (the only 1-D parameters: the convs and the FC have no bias).
        ## A hypothesis to measure (docs/recipe-candidates.md): their decay mostly shrinks the
        ## activations, which the next BatchNorm undoes, so it regularises little and slows the fit.
        params = [{"params": [p for p in params if p.ndim > 1]},
                  {"params": [p for p in params if p.ndim == 1], "weight_decay": 0.0}]
    optimizer = torch.optim.SGD(params, lr=cfg.lr_min or 0.0, momentum=cfg.momentum,
                                nesterov=cfg.nesterov, weight_decay=cfg.weight_decay)
    return model, optimizer, rt.grad_scaler()


# ==============================================================================================
# LRMIN and LRMAX: given, or found by the LR range test

def find_lrs(cfg, model, optimizer, scaler, rt, train_loader, loss_fn, log):
    """-> (lr_min, lr_max, how, range_test_result or None). The model and optimizer are left
    exactly as they were (the range test restores them)."""
    if cfg.lr_min is not None and cfg.lr_max is not None:
        return cfg.lr_min, cfg.lr_max, "given", None
    if cfg.lr_max is not None:
        return cfg.lr_max / cfg.lr_min_factor, cfg.lr_max, f"lr_max given, lr_min = lr_max / {cfg.lr_min_factor:g}", None
    if cfg.lr_min is not None:
        return cfg.lr_min, cfg.lr_min * cfg.lr_min_factor, f"lr_min given, lr_max = lr_min * {cfg.lr_min_factor:g}", None
    # Its own draws (seed + 1): the training data order does not depend on whether a test ran.
    loader = train_loader.reseeded(cfg.seed + 1)
    iters = cfg.lr_test_iters or min(100, max(20, len(loader)))
    log(f"LR range test: {iters} steps, LR {cfg.lr_test_start:g} -> {cfg.lr_test_end:g} "
        f"(costs about {iters / len(loader):.1f} epochs of training)")
    t0 = time.perf_counter()
    result = lr_finder.lr_range_test(
        model, optimizer, loss_fn, loader, start_lr=cfg.lr_test_start, end_lr=cfg.lr_test_end,
        num_iter=iters, smooth=min(0.3, 5 / iters), backoff=cfg.lr_backoff,
        min_factor=cfg.lr_min_factor, rise=cfg.lr_rise, autocast=rt.autocast, scaler=scaler)
    log(f"LR range test: {len(result.lrs)} steps ({result.stop_reason}) in {time.perf_counter() - t0:.1f} s; "
        f"LRMAX = {result.lr_max:.4g}, LRMIN = {result.lr_min:.4g}. Rule: {result.rule}"
        + (f" Note: {result.note}" if result.note else ""))
    return result.lr_min, result.lr_max, "range test", result


# ==============================================================================================
# Training and evaluation

class WeightAverage:
    """An exponential moving average of a model's weights and BatchNorm statistics, updated after
    every step: avg = d * avg + (1 - d) * current, the model the run evaluates when --ema-epochs
    is set (Polyak averaging; Page's "bag of tricks" averages every 5 steps with 0.99).

    d = exp(-1 / (ema_epochs * steps_per_epoch)): the average forgets with a time constant of
    ema_epochs epochs whatever the data size. It starts from the weights it is given (after the
    range test); their share of the final average is e^(-epochs / ema_epochs): e^-12 for 2 of 24."""

    def __init__(self, model, ema_epochs, steps_per_epoch):
        self.model = copy.deepcopy(model).eval()
        self.model.requires_grad_(False)
        self.decay = math.exp(-1 / (ema_epochs * steps_per_epoch))
        pairs = list(zip(self.model.state_dict().values(), model.state_dict().values()))
        floats = [p for p in pairs if p[0].is_floating_point()]      # weights, BN statistics: averaged
        counts = [p for p in pairs if not p[0].is_floating_point()]  # BN's num_batches_tracked: copied
        self.floats, self.counts = [list(t) for t in zip(*floats)], [list(t) for t in zip(*counts)]

    @torch.no_grad()
    def update(self):
        torch._foreach_lerp_(self.floats[0], self.floats[1], 1 - self.decay)       # one launch, not 70
        torch._foreach_copy_(self.counts[0], self.counts[1])


def train_step(model, x, y, optimizer, scaler, autocast, loss_fn):
    """One optimizer step on the batch (x, y); returns (logits, loss), detached.
    autocast: a context-manager factory (Runtime.autocast); scaler: a GradScaler, maybe disabled."""
    with autocast():
        logits = model(x)
        loss = loss_fn(logits, y)
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()
    return logits.detach(), loss.detach()


def train_one_epoch(model, loader, optimizer, scaler, rt, loss_fn, lr_at, first_step, *,
                    log_every=10, desc="", progress=True, average=None):
    """One pass over `loader`, the LR set before every step from lr_at(step); `average` (a
    WeightAverage, or None) is updated after every step.

    Loss and accuracy are summed on the device and read every `log_every` steps, so the host
    waits for the device only there. Raises FloatingPointError(step) at the first read after a
    non-finite loss. Returns (mean loss, accuracy %).
    """
    model.train()
    loss_sum = torch.zeros((), device=rt.device)
    correct = torch.zeros((), device=rt.device, dtype=torch.long)
    first_bad = torch.full((), -1, device=rt.device, dtype=torch.long)
    seen, n = 0, len(loader)
    with tqdm(total=n, desc=desc, disable=not progress, dynamic_ncols=True, leave=True) as bar:
        for i, (x, y) in enumerate(loader):
            step = first_step + i
            for group in optimizer.param_groups:
                group["lr"] = lr_at(step)
            logits, loss = train_step(model, x, y, optimizer, scaler, rt.autocast, loss_fn)
            if average is not None:
                average.update()
            loss = loss.float()
            loss_sum += loss * len(y)
            correct += (logits.argmax(1) == y).sum()
            first_bad = torch.where((first_bad < 0) & ~torch.isfinite(loss), step, first_bad)
            seen += len(y)
            bar.update(1)
            if (i + 1) % log_every == 0 or i + 1 == n:
                if first_bad.item() >= 0:                    # the one host-device sync point
                    raise FloatingPointError(int(first_bad))
                bar.set_postfix_str(f"loss={loss_sum.item() / seen:.4f} batch_id={i} "
                                    f"acc={100 * correct.item() / seen:.2f}%", refresh=False)
    return loss_sum.item() / seen, 100 * correct.item() / seen


def logits_of(model, x, autocast, tta=False):
    """float32 logits (N, 10) of the normalised batch x (N, 3, H, W).

    tta: flip test-time augmentation, airbench's TTA level 1: the mean of the logits of each image
    and of its mirror image (flipped left-right, as FlipLR in training). An image that is its own
    mirror image gets exactly its plain logits. Costs a second forward pass."""
    with autocast():
        logits = model(x).float()
        if tta:
            logits = (logits + model(x.flip(-1)).float()) / 2
    return logits


@torch.inference_mode()
def evaluate(model, loader, rt, tta=False):
    """Mean loss, correct count, and per-image predictions and confidences on `loader`
    (tta: see logits_of)."""
    model.eval()
    loss_sum = torch.zeros((), device=rt.device)
    preds, confs = [], []
    for x, y in loader:
        logits = logits_of(model, x, rt.autocast, tta)
        loss_sum += F.cross_entropy(logits, y, reduction="sum")
        prob, pred = logits.softmax(-1).max(-1)
        preds.append(pred)
        confs.append(prob)
    preds, confs = torch.cat(preds), torch.cat(confs)
    correct = int((preds == loader.labels).sum())
    return {"loss": loss_sum.item() / len(preds), "correct": correct, "n": len(preds),
            "preds": preds, "confidences": confs}


# ==============================================================================================
# Checkpoints

def save_checkpoint(path, model, optimizer, scaler, loader, cfg, state, average=None):
    payload = {
        "format": CHECKPOINT_FORMAT,
        "model": model.state_dict(),
        "average": average.model.state_dict() if average else None,     # --ema-epochs
        "optimizer": optimizer.state_dict(),
        "scaler": scaler.state_dict() if scaler.is_enabled() else {},
        # The CPU generator is the only one a run draws from (DeviceLoader draws on the CPU too).
        "rng": {"torch": torch.get_rng_state()},
        "loader_epoch": loader.epoch,
        "config": dataclasses.asdict(cfg),
        **state,     # epoch, step, history, lr_min, lr_max, lr_source, lr_range_test
    }
    utils.atomic_torch_save(payload, path)


def read_checkpoint(path) -> dict:
    ckpt = utils.load_torch_file(path, f"--resume {path}", "checkpoint",
                                 "give the checkpoint.pt of an earlier run")
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise UsageError(f"--resume {path}: not a checkpoint of this trainer (expected a "
                         f"checkpoint.pt written by train.py). To load bare weights, use model.pt.")
    return ckpt


def with_defaults(saved: dict) -> dict:
    """A config saved by an earlier version, completed with today's defaults for the settings
    added since (each new setting's default is the behaviour that version had)."""
    return {**{f.name: f.default for f in dataclasses.fields(Config)}, **saved}


def resume_config(ckpt, overrides, path) -> Config:
    """The checkpoint's config, with the overrides a resumed run may change."""
    saved = with_defaults(ckpt["config"])
    clash = {k: v for k, v in overrides.items()
             if k not in RESUME_FREE and k in saved and saved[k] != v}
    if clash:
        k, v = next(iter(clash.items()))
        raise UsageError(f"--resume {path}: the checkpoint was made with {k}={saved[k]!r}, but this run "
                         f"asks for {k}={v!r}. A resumed run keeps the checkpoint's settings: drop "
                         f"--{k.replace('_', '-')}, or start a new run without --resume.")
    merged = {**saved, **{k: v for k, v in overrides.items() if k in RESUME_FREE}}
    if "out_dir" not in overrides:
        merged["out_dir"] = os.path.dirname(os.path.abspath(path))
    return make_config(merged)


def restore(ckpt, model, optimizer, scaler, loader, path, average=None):
    try:
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        if average is not None:
            average.model.load_state_dict(ckpt["average"])
    except (RuntimeError, ValueError, KeyError, TypeError) as e:
        raise UsageError(f"--resume {path}: the weights do not fit CustomResNet(width="
                         f"{ckpt['config'].get('width')}) ({str(e).splitlines()[0][:200]}).") from None
    if scaler.is_enabled() and ckpt["scaler"]:
        scaler.load_state_dict(ckpt["scaler"])
    torch.set_rng_state(ckpt["rng"]["torch"])
    loader.epoch = ckpt["loader_epoch"]


# ==============================================================================================
# main

def main(**overrides) -> dict:
    """Run the recipe; returns the run's record (also written to <out_dir>/metrics.json). With
    seeds=N above 1: N runs and their statistics, see run_seeds; returns the summary.

    Keywords are the fields of Config (see `python train.py --help`). Mistakes raise UsageError.
    """
    t_start = time.perf_counter()
    check_keys_and_types(overrides)
    if overrides.get("seeds", 1) != 1:
        return run_seeds(overrides)
    ckpt = None
    if overrides.get("resume"):
        ckpt = read_checkpoint(overrides["resume"])
        cfg = resume_config(ckpt, overrides, overrides["resume"])
    else:
        cfg = make_config(overrides)
    utils.ensure_writable_dir(cfg.out_dir)
    log = print
    rt = utils.pick_runtime(cfg.device, cfg.precision)
    data = load_data(cfg)
    record = {"status": "running", "config": dataclasses.asdict(cfg), "runtime": rt.describe(),
              "code": series.code_version(),
              "data": {"source": "synthetic" if cfg.synthetic else "cifar10",
                       "train_images": len(data.train_labels), "test_images": len(data.test_labels),
                       # "validation" when test_batch is a split of the training images (data.py):
                       # then every "test" key of this record holds validation figures
                       "eval_split": data.eval_split},
              "history": [], "timings": {}}
    paths = {k: os.path.join(cfg.out_dir, k) for k in ("metrics.json", "checkpoint.pt", "model.pt")}
    # The last checkpoint on disk, for the messages of an interrupted or diverged run.
    saved = {"epoch": ckpt["epoch"], "path": cfg.resume} if ckpt else {"epoch": 0, "path": None}
    hw = record["runtime"]
    log(f"device {rt.device} ({hw.get('gpu', hw['cpu'])}), precision {rt.precision}; "
        f"{len(data.train_labels):,} training and {len(data.test_labels):,} {data.eval_split} images"
        + (" (synthetic)" if cfg.synthetic else ""))
    try:
        run(cfg, rt, data, ckpt, record, paths, saved, log)
    except KeyboardInterrupt:
        record["status"] = "interrupted"
        record["history"] = record["history"][:saved["epoch"]]     # only what the checkpoint holds
        utils.atomic_write_json(record, paths["metrics.json"])
        raise Interrupted(f"interrupted; {where_to_resume(saved)}") from None
    except torch.cuda.OutOfMemoryError:
        raise UsageError(f"out of memory on {rt.device} at batch size {cfg.batch_size}: try --batch-size "
                         f"{max(1, cfg.batch_size // 2)} (or a smaller --eval-batch-size if it failed "
                         "while evaluating)") from None
    record["timings"]["total_seconds"] = time.perf_counter() - t_start
    utils.atomic_write_json(record, paths["metrics.json"])
    final = record["history"][-1]
    log(f"{record['data']['eval_split']} accuracy {record['test_accuracy']:.2f}% ({record['test_correct']}/{final['test_n']}); "
        f"LRMIN {record['lr_min']:.4g}, LRMAX {record['lr_max']:.4g}; outputs in {cfg.out_dir}")
    return record


def run_seeds(overrides) -> dict:
    """main() for the seeds seed .. seed+N-1, each run in <out_dir>/seed-<s>/ with its usual files
    and its own range test; then the statistics (series.py) in <out_dir>/summary.json, a table on
    the screen and accuracies.png. Returns the summary.

    The summary is rewritten after every run, so an interrupted series leaves the finished runs'
    statistics. The same command continues it: a finished run (metrics.json complete, or
    diverged: a failure of the recipe that would repeat) is kept, an interrupted one continues
    from its last checkpoint, the rest run.
    """
    base = make_config(overrides)            # every mistake reported before the first run
    if base.resume:
        raise UsageError("--resume continues one run; to continue a series, run the same --seeds "
                         "command again (finished runs are kept)")
    utils.ensure_writable_dir(base.out_dir)
    seeds = range(base.seed, base.seed + base.seeds)
    config, code, rows = dataclasses.asdict(base), series.code_version(), []
    for seed in seeds:
        folder = os.path.join(base.out_dir, f"seed-{seed}")
        run_overrides = {**overrides, "seeds": 1, "seed": seed, "out_dir": folder}
        record = earlier_run(folder, run_overrides)
        if record and record["status"] in ("complete", "diverged"):
            print(f"=== seed {seed}: kept the finished run in {folder} ({record['status']})")
        else:
            print(f"=== seed {seed} (run {len(rows) + 1} of {len(seeds)}) in {folder}")
            record = run_in_series(folder, run_overrides, record, f"{len(rows)} of {len(seeds)}")
        rows.append(series.run_row(record, seed, folder))
        summary = series.summarize(rows, seeds, config, code)
        utils.atomic_write_json(summary, os.path.join(base.out_dir, "summary.json"))
    if base.plots:
        series.plot_accuracies(summary, os.path.join(base.out_dir, "accuracies.png"))
    print(series.format_table(summary))
    return summary


def earlier_run(folder, run_overrides):
    """The record in folder/metrics.json (None if there is none), after checking that it was made
    with the settings this series asks for: a series must not mix runs of two recipes."""
    path = os.path.join(folder, "metrics.json")
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        record = json.load(f)
    want, have = dataclasses.asdict(make_config(run_overrides)), with_defaults(record["config"])
    for k, v in want.items():
        if k not in RESUME_FREE and have.get(k) != v:
            raise UsageError(f"{folder} holds a run made with {k}={have.get(k)!r}, but this series asks for "
                             f"{k}={v!r}: give another --out-dir, or delete {folder} to run it again")
    return record


def run_in_series(folder, run_overrides, record, finished):
    """One run of the series: continued from its checkpoint when an earlier attempt left one.
    A diverged run is returned as such (its metrics.json says so); Ctrl-C stops the series."""
    checkpoint = os.path.join(folder, "checkpoint.pt")
    if record and os.path.isfile(checkpoint):
        # Every setting passed on: resume_config refuses one the checkpoint was not made with.
        run_overrides = {**run_overrides, "resume": checkpoint}
    try:
        return main(**run_overrides)
    except Diverged as e:
        print(f"this run diverged and counts as a failure of the recipe: {e}")
        with open(os.path.join(folder, "metrics.json")) as f:
            return json.load(f)
    except (Interrupted, KeyboardInterrupt):
        raise Interrupted(f"interrupted; {finished} runs of the series were finished and are kept. Run the "
                          "same command again to continue (this run from its last checkpoint, if it has one)") from None


def where_to_resume(saved):
    if not saved["epoch"]:
        return "no epoch had finished, so there is nothing to resume; start again"
    return (f"the last complete checkpoint (epoch {saved['epoch']}) is {saved['path']}; continue with: "
            f"python train.py --resume {saved['path']}")


def run(cfg, rt, data, ckpt, record, paths, saved, log):
    """Loaders, model, LRs, the epoch loop, the weights and the report; fills `record`."""
    train_loader = cifar.DeviceLoader(data.train_images, data.train_labels, cfg.batch_size, train=True,
                                      device=rt.device, seed=cfg.seed, pad_mode=cfg.pad_mode, cutout=cfg.cutout,
                                      cutout_inside=cfg.cutout_inside)
    test_loader = cifar.DeviceLoader(data.test_images, data.test_labels, cfg.eval_batch_size,
                                     train=False, device=rt.device)
    model, optimizer, scaler = build(cfg, rt)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    # Made before the range test, which restores the weights bit for bit and in place: the
    # average starts from the weights training starts from (a resumed run then loads its own).
    average = WeightAverage(model, cfg.ema_epochs, len(train_loader)) if cfg.ema_epochs else None
    if ckpt is not None:
        restore(ckpt, model, optimizer, scaler, train_loader, cfg.resume, average)
        state = {k: ckpt[k] for k in ("epoch", "step", "history", "lr_min", "lr_max", "lr_source", "lr_range_test")}
        log(f"resumed from {cfg.resume} after epoch {state['epoch']}")
    else:
        t = time.perf_counter()
        lr_min, lr_max, how, result = find_lrs(cfg, model, optimizer, scaler, rt, train_loader, loss_fn, log)
        record["timings"]["lr_test_seconds"] = time.perf_counter() - t
        range_png = os.path.join(cfg.out_dir, "lr_range_test.png")
        if result is not None and cfg.plots:
            lr_finder.plot_range_test(result, range_png)       # now: worth a look while training runs
        elif os.path.exists(range_png):
            os.remove(range_png)                               # an earlier run's: not these LRs
        state = {"epoch": 0, "step": 0, "history": [], "lr_min": lr_min, "lr_max": lr_max,
                 "lr_source": how, "lr_range_test": result.to_dict() if result else None}
    record.update({k: state[k] for k in ("lr_min", "lr_max", "lr_source", "lr_range_test")})
    record["history"] = state["history"]
    last_eval = fit(cfg, rt, model, optimizer, scaler, loss_fn, train_loader, test_loader, state, record,
                    paths, saved, log, average)
    model = average.model if average else model      # what was evaluated: saved, explained
    if last_eval is None:                  # resumed from a finished run: nothing was evaluated
        last_eval = evaluate(model, test_loader, rt, cfg.tta)
    final = record["history"][-1]
    record.update(status="complete", test_accuracy=final["test_acc"], test_correct=final["test_correct"])
    # CPU tensors: weights trained on a GPU load on a laptop without map_location.
    utils.atomic_torch_save({k: v.detach().cpu() for k, v in model.state_dict().items()}, paths["model.pt"])
    cm = add_class_accuracy(record, data, last_eval["preds"])
    if cfg.plots:
        make_report(cfg, rt, model, test_loader, data, record, last_eval, cm, log)


def fit(cfg, rt, model, optimizer, scaler, loss_fn, train_loader, test_loader, state, record, paths, saved, log,
        average=None):
    """The epoch loop: train, evaluate (the weight average when there is one), checkpoint and
    metrics after every epoch. Returns the last epoch's evaluation (None when no epoch was left)."""
    steps_per_epoch = len(train_loader)
    total = cfg.epochs * steps_per_epoch
    peak = cfg.peak_epoch * steps_per_epoch - 1
    lr_at = lambda s: one_cycle_lr(s, total, peak, state["lr_min"], state["lr_max"])  # noqa: E731
    record.update(steps_per_epoch=steps_per_epoch, total_steps=total,
                  lr_schedule=[lr_at(s) for s in range(total)])
    train_model, record["timings"]["compile_seconds"] = maybe_compile(cfg, model, optimizer, scaler, rt,
                                                                      loss_fn, train_loader, test_loader)
    ev, split = None, record["data"]["eval_split"]        # "test" or "validation"
    for epoch in range(state["epoch"] + 1, cfg.epochs + 1):
        timer = rt.timer().start()
        try:
            train_loss, train_acc = train_one_epoch(
                train_model, train_loader, optimizer, scaler, rt, loss_fn, lr_at, state["step"],
                log_every=cfg.log_every, desc=f"Epoch {epoch}/{cfg.epochs}", progress=cfg.progress,
                average=average)
        except FloatingPointError as e:
            step = int(str(e))
            raise_diverged(record, paths, saved, f"the training loss became non-finite in epoch {epoch}, "
                           f"at step {step} (LR {lr_at(step):.4g})")
        train_seconds = timer.stop()
        timer.start()
        ev = evaluate(average.model if average else train_model, test_loader, rt, cfg.tta)
        eval_seconds = timer.stop()
        if not math.isfinite(ev["loss"]):
            # The last update of the epoch broke the weights (the training loss of a step is
            # measured before its update): never checkpoint them.
            raise_diverged(record, paths, saved, f"the weights became non-finite in epoch {epoch} "
                           f"({split} loss {ev['loss']}; LR at the last step {lr_at(state['step'] + steps_per_epoch - 1):.4g})")
        state["step"] += steps_per_epoch
        state["epoch"] = epoch
        test_acc = 100 * ev["correct"] / ev["n"]
        log(f"{split.capitalize()} set: Average loss: {ev['loss']:.4f}, Accuracy: {ev['correct']}/{ev['n']} ({test_acc:.2f}%)"
            + (" with flip TTA" if cfg.tta else ""))
        state["history"].append({
            "epoch": epoch, "lr": lr_at(state["step"] - 1), "train_loss": train_loss, "train_acc": train_acc,
            "test_loss": ev["loss"], "test_acc": test_acc, "test_correct": ev["correct"], "test_n": ev["n"],
            "train_seconds": train_seconds, "eval_seconds": eval_seconds})
        record["history"] = state["history"]
        update_timings(record, steps_per_epoch * cfg.batch_size)
        save_checkpoint(paths["checkpoint.pt"], model, optimizer, scaler, train_loader, cfg, state, average)
        saved.update(epoch=epoch, path=paths["checkpoint.pt"])
        utils.atomic_write_json(record, paths["metrics.json"])
    return ev


def raise_diverged(record, paths, saved, what):
    record["status"] = "diverged"
    record["history"] = record["history"][:saved["epoch"]]
    utils.atomic_write_json(record, paths["metrics.json"])
    kept = (f"the last good checkpoint (epoch {saved['epoch']}) is {saved['path']}" if saved["epoch"]
            else "no checkpoint was written")
    raise Diverged(f"{what}; training stopped and {kept}. Lower --lr-max (or --lr-min), or check the data.")


def update_timings(record, images_per_epoch):
    h = record["history"]
    train_s = sum(e["train_seconds"] for e in h)
    record["timings"].update(train_seconds=train_s, eval_seconds=sum(e["eval_seconds"] for e in h),
                             images_per_second=len(h) * images_per_epoch / train_s if train_s else None)


def maybe_compile(cfg, model, optimizer, scaler, rt, loss_fn, train_loader, test_loader):
    """torch.compile the model and compile it now, on one training step and one evaluation batch,
    so the compile time is measured apart from training; the step's effect is then undone."""
    if not cfg.compile:
        return model, 0.0
    # dynamic=False: one static graph per batch size (training, evaluation, a last partial
    # evaluation batch) instead of a dynamic-shape graph once the eval batch size differs.
    compiled = torch.compile(model, dynamic=False)
    t0 = time.perf_counter()
    saved_model = {k: v.clone() for k, v in model.state_dict().items()}
    saved_opt = copy.deepcopy(optimizer.state_dict())
    x, y = next(iter(train_loader.reseeded(cfg.seed + 2)))
    with rt.autocast():
        loss = loss_fn(compiled(x), y)
    scaler.scale(loss).backward()
    optimizer.zero_grad(set_to_none=True)
    evaluate(compiled, test_loader, rt)
    model.load_state_dict(saved_model)
    optimizer.load_state_dict(saved_opt)
    rt.sync()
    return compiled, time.perf_counter() - t0


# ==============================================================================================
# The report: per-class accuracy and the pictures

def add_class_accuracy(record, data, preds):
    cm = utils.confusion_matrix(data.test_labels, preds.cpu(), num_classes=10)
    record["per_class_accuracy"] = dict(zip(data.classes, utils.per_class_accuracy(cm)))
    return cm


def make_report(cfg, rt, model, test_loader, data, record, ev, cm, log):
    """The pictures of docs/SPEC.md section 3, from the final evaluation `ev` and confusion matrix `cm`."""
    import gradcam
    out = cfg.out_dir
    preds, confs = ev["preds"].cpu(), ev["confidences"].float().cpu()
    wrong = (preds != data.test_labels).nonzero().flatten()
    wrong = wrong[confs[wrong].argsort(descending=True, stable=True)]     # most confident mistakes first
    range_png = os.path.join(out, "lr_range_test.png")
    if record["lr_range_test"] and not os.path.exists(range_png):          # resumed into a new folder
        lr_finder.plot_range_test(lr_finder.RangeTestResult(**record["lr_range_test"]), range_png)
    split = data.eval_split                                            # "test" or "validation"
    utils.plot_curves(record["history"], os.path.join(out, "curves.png"), split=split)
    utils.plot_lr_schedule(record["lr_schedule"], record["steps_per_epoch"], os.path.join(out, "lr_schedule.png"),
                           lr_max=record["lr_max"])
    utils.plot_confusion(cm, data.classes, os.path.join(out, "confusion.png"), split=split)
    utils.plot_misclassified(data.test_images[wrong], data.test_labels[wrong], preds[wrong], confs[wrong],
                             data.classes, os.path.join(out, "misclassified.png"), split=split)
    few = wrong[:10]
    cams_pred = cams_true = torch.zeros(0, 32, 32)
    layer = cfg.gradcam_layer
    if len(few):                                                      # else: a picture that says so
        x = test_loader.normalize(data.test_images[few].to(rt.device))  # (10, 3, 32, 32)
        with gradcam.GradCAM(model, cfg.gradcam_layer) as cam:
            cams_pred = cam(x, preds[few].to(rt.device)).cpu()
            cams_true = cam(x, data.test_labels[few].to(rt.device)).cpu()
            h, w = cam.activations.shape[-2:]
            layer = f"{layer}, {h}x{w} map"
    utils.plot_gradcam(data.test_images[few], cams_pred, cams_true, data.test_labels[few], preds[few],
                       data.classes, os.path.join(out, "gradcam.png"), layer=layer, split=split)
    log(f"plots saved in {out}: " + " ".join(sorted(f for f in os.listdir(out) if f.endswith(".png"))))


# ==============================================================================================
# Command line

class _Parser(argparse.ArgumentParser):
    def error(self, message):            # one line, not the whole usage block
        hint = ""
        if message.startswith("unrecognized arguments"):
            flags = [s for a in self._actions for s in a.option_strings]
            guesses = [m[0] for w in message.split(":", 1)[1].split() if w.startswith("--")
                       if (m := difflib.get_close_matches(w.split("=")[0], flags, 1))]
            hint = f" (did you mean {', '.join(guesses)}?)" if guesses else ""
        self.exit(2, f"error: {message}{hint}. See: python train.py --help\n")


def default_in_words(f) -> str:
    """The default of Config field f as --help shows it: the field's words where it has them,
    on/off for a switch, else the value."""
    if f.metadata.get("default_in_words"):
        return f.metadata["default_in_words"]
    if f.type is bool:
        return "on" if f.default else "off"
    return str(f.default)


METAVARS = {"data_dir": "DIR", "out_dir": "DIR", "resume": "PATH", "lr_min": "LR", "lr_max": "LR",
            "lr_test_start": "LR", "lr_test_end": "LR", "gradcam_layer": "LAYER"}
EXAMPLES = f"""examples:
  python train.py                                      # the recipe: range test, 24 epochs, report
  python train.py --synthetic --epochs 3 --width 16 --batch-size 128
                                                       # offline pipeline check in seconds; no accuracy claim
  python train.py --seeds 5                            # seeds 0..4, then mean, std and pass rates
  python train.py --lr-max 0.4                         # skip the range test; LRMIN = 0.4 / {lr_finder.MIN_FACTOR:g}
  python train.py --data-dir DIR --no-download         # a cifar-10-batches-py folder you already have
  python train.py --resume out/checkpoint.pt           # continue an interrupted run"""


def parse_args(argv):
    parser = _Parser(prog="train.py", usage="python train.py [--flag VALUE ...]  (every flag below)",
                     description=__doc__.split("\n\n")[0], epilog=EXAMPLES,
                     formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False)
    group = parser
    for f in dataclasses.fields(Config):
        if f.name in HELP_GROUPS:
            group = parser.add_argument_group(HELP_GROUPS[f.name])
        flag = "--" + f.name.replace("_", "-")
        text = f"{f.metadata['help']} (default: {default_in_words(f)})"
        if f.type is bool:
            group.add_argument(flag, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS, help=text)
        else:
            convert = float if f.type in (Optional[float], float) else int if f.type is int else str
            metavar = METAVARS.get(f.name, {int: "N", float: "X", str: "NAME"}[convert])
            group.add_argument(flag, type=convert, default=argparse.SUPPRESS, metavar=metavar, help=text)
    return vars(parser.parse_args(argv))


def cli(argv=None) -> int:
    overrides = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        main(**overrides)
    except KeyboardInterrupt:            # outside the epoch loop: before training, or while plotting
        print("interrupted; no training epoch was in progress", file=sys.stderr)
        return Interrupted.exit_code
    except UsageError as e:
        label = "interrupted" if isinstance(e, Interrupted) else "error"
        print(f"{label}: {str(e).removeprefix('interrupted; ')}", file=sys.stderr)
        return getattr(e, "exit_code", 2)
    return 0


if __name__ == "__main__":
    sys.exit(cli())
