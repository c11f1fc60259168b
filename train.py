"""Train the custom ResNet on CIFAR-10: the recipe of docs/SPEC.md, top to bottom.

    python train.py --synthetic --epochs 3 --width 16 --batch-size 128 --out-dir out/quick-check
                                             # the quick offline check, any CPU (settings.QUICK_CHECK)
    python train.py                          # the recipe: range test, 24 epochs, report (downloads CIFAR-10)
    python train.py --seeds 5 --out-dir out/seeds    # the recipe for seeds 0..4, then their statistics
    python train.py --help                   # every flag

    import train; record = train.main(epochs=24)   # from Python or a notebook

In the order a run happens: hyperparameters, one-cycle, data, model and optimizer, LRMIN and LRMAX,
step, epoch, evaluation, the run (`train`), `main`. The machinery lives in modules named for it:
settings.py, checkpoint.py (the run's files), report.py, series.py (--seeds, --sweep), cluster.py
(torchrun), utils.py.
"""
import copy
import functools
import math
import sys
import time
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

import checkpoint
import cluster
import data as cifar
import lr_finder
import report
import series
import settings
import utils
import weights
from custom_resnet import CustomResNet
from settings import setting


# ==============================================================================================
# Hyperparameters: each is a keyword of main() and a flag (lr_max -> --lr-max). The defaults are
# the recipe of docs/SPEC.md section 2. Each group's first field names its group in --help.

@dataclass
class Config(settings.Settings):
    # --- the recipe: one cycle of the LR per step, SGD, the network, the seed
    epochs: int = setting(24, "training epochs; at least peak_epoch", group="recipe")
    peak_epoch: Optional[float] = setting(None, "the LR rises linearly to LRMAX at the end of this epoch, "
                                          "then falls", "5/24 of the epochs, 5 of 24")
    batch_size: int = setting(512, "training images per step (the last incomplete batch is dropped)")
    lr_min: Optional[float] = setting(None, "LRMIN, start and end of the cycle (giving it skips the range "
                                      "test)", "LRMAX / lr_min_factor")
    lr_max: Optional[float] = setting(None, "LRMAX, the peak LR (giving it skips the range test)",
                                      "found by the LR range test")
    momentum: float = setting(0.9, "SGD momentum")
    nesterov: bool = setting(True, "Nesterov momentum (--no-nesterov for heavy-ball)")
    weight_decay: float = setting(5e-4, "L2 weight decay (on every parameter, as Page's, unless --no-bn-weight-decay)")
    bn_weight_decay: bool = setting(True, "weight decay on BatchNorm's scales and shifts too, as in Page's "
                                    "ResNet-9 (--no-bn-weight-decay: on the conv and FC weights only)")
    label_smoothing: float = setting(0.0, "label smoothing of the loss (Page's final version uses 0.2)", "0, none")
    ema_epochs: float = setting(0.0, "evaluate an exponential moving average of the weights (and BatchNorm "
                                "statistics) with this time constant in epochs, instead of the trained "
                                "weights (Page's bag of tricks)", "0, off")
    width: int = setting(64, "channels of the prep layer (64 = the specification; small for quick tests)")
    seed: int = setting(0, "seed of the weights and the data order; CPU fp32 runs are bit-reproducible")
    seeds: int = setting(1, "the whole recipe for seeds seed .. seed+N-1, each in <out_dir>/seed-<s>/, then "
                         "<out_dir>/summary.json; the same command again continues it; torchrun spreads it "
                         "(docs/scaling.md)", "1, one run")
    sweep: str = setting("", "a grid of settings times the seeds, one --sweep per setting (--sweep lr_max=0.1,0.2 "
                         "--sweep label_smoothing=0,0.2), each point in <out_dir>/<its settings>/", "none")
    # --- the LR range test (lr_finder.py): runs only when neither LR is given
    lr_test_iters: int = setting(0, "steps of the range test", "0, auto: one epoch's steps, clamped to 20..100",
                                 group="LR range test (runs when neither LR is given)")
    lr_test_start: float = setting(lr_finder.START_LR, "first LR of the range test")
    lr_test_end: float = setting(lr_finder.END_LR, "last LR of the range test (grows exponentially from the first)")
    lr_backoff: float = setting(lr_finder.BACKOFF, "LRMAX = the LR at the first minimum of the smoothed "
                                "loss / lr_backoff (lr_finder.py; chosen in docs/lr-rule.md)")
    lr_min_factor: float = setting(lr_finder.MIN_FACTOR, "LRMIN = LRMAX / lr_min_factor (Smith: 10-20 for "
                                   "one cycle; chosen in docs/lr-rule.md)")
    lr_rise: float = setting(lr_finder.RISE, "the range test's loss has turned up once its smoothed value is "
                             "this fraction above its lowest (0.05: 5 percent); later dips are ignored")
    # --- data and augmentation (training only: RandomCrop(32, padding=4) >> FlipLR >> Cutout)
    data_dir: str = setting("./data", "folder with cifar-10-batches-py (downloaded there if missing)",
                            group="data and augmentation")
    download: bool = setting(True, "download CIFAR-10 when it is missing (--no-download forbids it)")
    synthetic: bool = setting(False, "use offline synthetic data of CIFAR-10's shape instead of CIFAR-10: "
                              "checks the pipeline, says nothing about accuracy on CIFAR-10")
    synthetic_train: int = setting(2560, "number of synthetic training images (with --synthetic)")
    synthetic_test: int = setting(1000, "number of synthetic test images (with --synthetic)")
    subset: int = setting(0, "keep only the first N training and the first N held-out images", "0, all")
    pad_mode: str = setting("reflect", "padding of the random crop: reflect (Page, airbench) or zeros "
                            "(torchvision)")
    cutout: int = setting(8, "side of the Cutout square in pixels (0: no Cutout)")
    cutout_inside: bool = setting(False, "keep the Cutout square whole inside the image, always cutout^2 "
                                  "pixels (Page's cifar10-fast); off: its centre anywhere, the square "
                                  "clipped at the border (DeVries & Taylor)")
    # --- output and reports
    out_dir: str = setting("./out", "where metrics.json, model.pt, checkpoint.pt and the plots go",
                           group="output and reports")
    resume: str = setting("", "path of a checkpoint.pt to continue from, exactly where it stopped",
                          "none, a new run")
    overwrite: bool = setting(False, "start over in an out_dir that holds a run, removing that run's files "
                              "(without it, such a folder is refused and nothing in it changes)")
    tta: bool = setting(False, "flip test-time augmentation: evaluate on the mean of the logits of each "
                        "image and its mirror image (off in the specification's recipe)")
    misclassified: int = setting(10, "misclassified held-out images shown (the most confident mistakes), each "
                                 "with Grad-CAM for its predicted and its true class (the assignment's 10)")
    gradcam_layer: str = setting("layer2", "where gradcam.png's maps are taken: layer2 (8x8), layer1 (16x16), "
                                 "prep (32x32), layer3 (4x4, under the course's 5x5), or a part inside them "
                                 "such as layer1.res")
    eval_batch_size: int = setting(1000, "held-out images per evaluation batch")
    log_every: int = setting(10, "read the running loss/accuracy from the device at the first step, then "
                             "every N steps")
    plots: bool = setting(True, "save the plots at the end of the run (--no-plots skips them)")
    progress: bool = setting(True, "show a progress bar per epoch (--no-progress for plain logs)")
    # --- device and precision (utils.pick_runtime)
    device: str = setting("auto", "auto | cpu | cuda | cuda:N | mps", "auto, CUDA, else MPS, else the CPU",
                          group="device and precision")
    precision: str = setting("auto", "auto | fp32 | bf16 | fp16",
                             "auto, bf16 where supported, fp16 with a grad scaler on older GPUs, else fp32")
    compile: bool = setting(False, "torch.compile the model (compile time is reported separately)")


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
# The data: uint8 tensors, loaded once

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


# ==============================================================================================
# The model and what changes it: SGD, the loss, fp16's grad scaler, the weight average

class WeightAverage:
    """--ema-epochs: an exponential moving average of the weights and BatchNorm statistics, updated
    after every step, avg = d * avg + (1 - d) * current (Polyak averaging; Page's "bag of tricks").
    d = exp(-1 / (ema_epochs * steps_per_epoch)): a time constant of ema_epochs epochs whatever the
    data size; the weights it starts from keep e^(-epochs / ema_epochs) of the final average."""

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


@dataclass
class Learner:
    """The model and everything a training step changes, in one object."""
    model: nn.Module                 # the weights (what the checkpoint keeps)
    net: nn.Module                   # what runs forward: the model, or torch.compile of it
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler     # fp16's loss scaling; a no-op when disabled
    loss_fn: nn.Module
    rt: utils.Runtime                # device and precision
    average: Optional[WeightAverage] = None

    @property
    def evaluated(self) -> nn.Module:
        """What each epoch evaluates: the weight average when there is one, else the net."""
        return self.average.model if self.average else self.net

    @property
    def final(self) -> nn.Module:
        """What model.pt keeps and the report explains: the weight average, else the model."""
        return self.average.model if self.average else self.model

    def state_dict(self) -> dict:
        return {"model": self.model.state_dict(), "average": self.average.model.state_dict() if self.average
                else None, "optimizer": self.optimizer.state_dict(),
                "scaler": self.scaler.state_dict() if self.scaler.is_enabled() else {}}

    def load_state_dict(self, state):
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.average is not None:
            self.average.model.load_state_dict(state["average"])
        if self.scaler.is_enabled() and state["scaler"]:
            self.scaler.load_state_dict(state["scaler"])


def build(cfg: Config, rt: utils.Runtime, steps_per_epoch: int) -> Learner:
    torch.manual_seed(cfg.seed)
    model = CustomResNet(num_classes=10, width=cfg.width)
    # channels_last (NHWC): the layout the tensor cores and oneDNN convolutions run natively.
    model = model.to(rt.device, memory_format=torch.channels_last)
    params = list(model.parameters())
    if not cfg.bn_weight_decay:
        # BatchNorm's scale and shift are the only 1-D parameters (the convs and the FC have no bias).
        params = [{"params": [p for p in params if p.ndim > 1]},
                  {"params": [p for p in params if p.ndim == 1], "weight_decay": 0.0}]
    optimizer = torch.optim.SGD(params, lr=cfg.lr_min or 0.0, momentum=cfg.momentum,
                                nesterov=cfg.nesterov, weight_decay=cfg.weight_decay)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    # Made before the range test, which restores the weights bit for bit and in place: the
    # average starts from the weights training starts from (a resumed run then loads its own).
    average = WeightAverage(model, cfg.ema_epochs, steps_per_epoch) if cfg.ema_epochs else None
    return Learner(model, model, optimizer, rt.grad_scaler(), loss_fn, rt, average)


# ==============================================================================================
# LRMIN and LRMAX: given, or found by the LR range test

def find_lrs(cfg: Config, learner: Learner, train_loader):
    """-> (lr_min, lr_max, how, range test result as a dict or None); the model is left as it was."""
    if cfg.lr_min is not None and cfg.lr_max is not None:
        return cfg.lr_min, cfg.lr_max, "given", None
    if cfg.lr_max is not None:
        return cfg.lr_max / cfg.lr_min_factor, cfg.lr_max, f"lr_max given, lr_min = lr_max / {cfg.lr_min_factor:g}", None
    if cfg.lr_min is not None:
        return cfg.lr_min, cfg.lr_min * cfg.lr_min_factor, f"lr_min given, lr_max = lr_min * {cfg.lr_min_factor:g}", None
    loader = train_loader.reseeded(cfg.seed + 1)      # its own draws: the training data order stays as it is
    iters = cfg.lr_test_iters or lr_finder.default_num_iter(loader)      # smoothing: lr_finder's default
    print(f"LR range test: {iters} steps, LR {cfg.lr_test_start:g} -> {cfg.lr_test_end:g} "
          f"(costs about {iters / len(loader):.1f} epochs of training)")
    t0 = time.perf_counter()
    with report.range_test_bar(iters, cfg.progress) as shown:
        result = lr_finder.lr_range_test(
            learner.model, learner.optimizer, learner.loss_fn, loader, start_lr=cfg.lr_test_start,
            end_lr=cfg.lr_test_end, num_iter=iters, backoff=cfg.lr_backoff, min_factor=cfg.lr_min_factor,
            rise=cfg.lr_rise, autocast=learner.rt.autocast, scaler=learner.scaler, step_hook=shown)
    print(f"LR range test: {len(result.lrs)} steps ({result.stop_reason}) in {time.perf_counter() - t0:.1f} s; "
          f"LRMAX = {result.lr_max:.4g}, LRMIN = {result.lr_min:.4g}. Rule: {result.rule}"
          + (f" Note: {result.note}" if result.note else ""))
    return result.lr_min, result.lr_max, "range test", result.to_dict()


# ==============================================================================================
# One step, one epoch, one evaluation

def train_step(learner: Learner, x, y):
    """One optimizer step on the batch x (B, 3, 32, 32), y (B,); returns (logits, loss), detached."""
    with learner.rt.autocast():
        logits = learner.net(x)
        loss = learner.loss_fn(logits, y)
    learner.optimizer.zero_grad(set_to_none=True)
    learner.scaler.scale(loss).backward()
    learner.scaler.step(learner.optimizer)
    learner.scaler.update()
    return logits.detach(), loss.detach()


def train_one_epoch(learner: Learner, loader, lr_at, epoch, cfg: Config, on_pace=None):
    """Epoch `epoch` (1-based): one pass over `loader`, the LR set before every step from
    lr_at(step), the weight average (if any) updated after every step. Returns (mean loss,
    accuracy %).

    Loss and accuracy are summed on the device and read at the first step and every cfg.log_every
    steps, so the host waits for the device only there; the course's log line shows every step's
    batch index with the last figures read. Raises FloatingPointError(step) at the first read after
    a non-finite loss. on_pace(seconds per step, steps timed), if given, is called once, at the
    second read: the pace of the steps after the first (whose time is the warm-up's)."""
    learner.net.train()
    device, n = learner.rt.device, len(loader)
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    first_bad = torch.full((), -1, device=device, dtype=torch.long)
    seen, first_step = 0, (epoch - 1) * n
    with tqdm(total=n, desc=f"Epoch {epoch}/{cfg.epochs}", disable=not cfg.progress, dynamic_ncols=True,
              leave=True) as bar:
        for i, (x, y) in enumerate(loader):
            step = first_step + i
            for group in learner.optimizer.param_groups:
                group["lr"] = lr_at(step)
            logits, loss = train_step(learner, x, y)
            if learner.average is not None:
                learner.average.update()
            loss = loss.float()
            loss_sum += loss * len(y)
            correct += (logits.argmax(1) == y).sum()
            first_bad = torch.where((first_bad < 0) & ~torch.isfinite(loss), step, first_bad)
            seen += len(y)
            fresh = i == 0 or (i + 1) % cfg.log_every == 0 or i + 1 == n
            if fresh:
                if first_bad.item() >= 0:                    # the one host-device sync point
                    raise FloatingPointError(int(first_bad))
                read = (loss_sum.item() / seen, 100 * correct.item() / seen)
                if i == 0:
                    t_first = time.perf_counter()            # the device has done step 0
                elif on_pace is not None:
                    on_pace((time.perf_counter() - t_first) / i, i)
                    on_pace = None
            line = f"Epoch {epoch}/{cfg.epochs} Loss={read[0]:.4f} Batch_id={i} Accuracy={read[1]:.2f}"  # the course's
            bar.set_description(line, refresh=False)                                                 # log line
            bar.update(1)                    # drawn when tqdm's interval has passed
            if fresh:
                bar.refresh()                # new figures: drawn now
    if not cfg.progress:
        print(line)                          # no bar: the course's line, once an epoch
    return loss_sum.item() / seen, 100 * correct.item() / seen


@torch.inference_mode()
def evaluate(model, loader, rt, tta=False):
    """Mean loss, correct count, and per-image predictions and confidences on `loader`. tta: flip
    test-time augmentation (airbench's level 1), the mean of the logits of each image and its mirror."""
    model.eval()
    loss_sum = torch.zeros((), device=rt.device)
    preds, confs = [], []
    for x, y in loader:
        with rt.autocast():
            logits = model(x).float()                                          # (B, 10)
            if tta:
                logits = (logits + model(x.flip(-1)).float()) / 2
        loss_sum += F.cross_entropy(logits, y, reduction="sum")
        prob, pred = logits.softmax(-1).max(-1)
        preds.append(pred)
        confs.append(prob)
    preds, confs = torch.cat(preds), torch.cat(confs)
    correct = int((preds == loader.labels).sum())
    return {"loss": loss_sum.item() / len(preds), "correct": correct, "n": len(preds),
            "preds": preds, "confidences": confs}


def compile_now(learner: Learner, batch, test_loader) -> float:
    """--compile: compile the model now, on a training step (then undone) and an evaluation pass,
    so that its time is measured apart from training's."""
    # dynamic=False: a static graph per batch size (training, evaluation, a last partial batch).
    learner.net = torch.compile(learner.model, dynamic=False)
    t0, saved = time.perf_counter(), copy.deepcopy(learner.state_dict())
    train_step(learner, *batch)
    evaluate(learner.net, test_loader, learner.rt)
    learner.load_state_dict(saved)
    learner.rt.sync()
    return time.perf_counter() - t0


# ==============================================================================================
# The run

def train(cfg: Config, ckpt: Optional[dict] = None) -> dict:
    """One run of the recipe (continued from `ckpt`, a checkpoint, when given); returns its record."""
    t_start = time.perf_counter()
    with checkpoint.Run(cfg, ckpt) as run:         # out_dir is this run's alone until it ends
        rt = utils.pick_runtime(cfg.device, cfg.precision)
        data = load_data(cfg)
        split = data.eval_split                    # "test", or "validation": a split of training images
        run.begin(rt.describe(), cifar.describe(data, cfg.synthetic))
        print(report.start_line(run.record), *settings.warnings(cfg, rt.device.type), sep="\n")

        # The data on the device: training batches augmented there, the held-out images in order.
        train_loader = cifar.DeviceLoader(data.train_images, data.train_labels, cfg.batch_size, train=True,
                                          device=rt.device, seed=cfg.seed, pad_mode=cfg.pad_mode,
                                          cutout=cfg.cutout, cutout_inside=cfg.cutout_inside)
        test_loader = cifar.DeviceLoader(data.test_images, data.test_labels, cfg.eval_batch_size, train=False,
                                         device=rt.device)
        steps_per_epoch = len(train_loader)
        learner = build(cfg, rt, steps_per_epoch)

        # LRMIN and LRMAX: the checkpoint's, given, or found by the range test.
        if ckpt is not None:
            checkpoint.restore(ckpt, learner, train_loader, cfg.resume)
            print(f"resumed from {cfg.resume} after epoch {run.epoch}")
        else:
            t = time.perf_counter()
            run.set_lrs(*find_lrs(cfg, learner, train_loader))
            run.record["timings"]["lr_test_seconds"] = time.perf_counter() - t
            report.draw_range_test(run.record["lr_range_test"], cfg.out_dir, draw=cfg.plots, synthetic=cfg.synthetic)
        total = cfg.epochs * steps_per_epoch
        lr_at = functools.partial(one_cycle_lr, total_steps=total, peak_step=cfg.peak_epoch * steps_per_epoch - 1,
                                  lr_min=run.lr_min, lr_max=run.lr_max)
        run.record.update(steps_per_epoch=steps_per_epoch, total_steps=total,
                          lr_schedule=[lr_at(s) for s in range(total)])
        run.record["timings"]["compile_seconds"] = compile_now(
            learner, next(iter(train_loader.reseeded(cfg.seed + 2))), test_loader) if cfg.compile else 0.0

        # The epoch loop: train, evaluate, log, checkpoint.
        ev, first = None, run.epoch + 1
        pace = report.expected_time(t_start, (cfg.epochs - run.epoch) * steps_per_epoch,
                                    (cfg.epochs - run.epoch) * len(data.test_labels), cfg.batch_size)
        for epoch in range(first, cfg.epochs + 1):
            timer = rt.timer().start()
            try:
                train_loss, train_acc = train_one_epoch(learner, train_loader, lr_at, epoch, cfg,
                                                        on_pace=pace if epoch == first else None)
            except FloatingPointError as e:
                raise run.diverged(f"the training loss became non-finite in epoch {epoch}, at step {e} "
                                   f"(LR {lr_at(int(str(e))):.4g})") from None
            train_seconds = timer.stop()
            timer.start()
            ev = evaluate(learner.evaluated, test_loader, rt, cfg.tta)
            eval_seconds = timer.stop()
            broken = weights.first_non_finite(learner.state_dict())      # weights, statistics, momentum
            if broken or not math.isfinite(ev["loss"]):
                # The last update of the epoch broke the weights (the training loss of a step is
                # measured before its update): never checkpoint them.
                raise run.diverged(f"the weights became non-finite in epoch {epoch} ({broken or 'a weight'} holds "
                                   f"NaN or inf; {split} loss {ev['loss']:.4g}; LR at the last step "
                                   f"{lr_at(run.step + steps_per_epoch - 1):.4g})")
            test_acc = 100 * ev["correct"] / ev["n"]
            print(f"{split.capitalize()} set: Average loss: {ev['loss']:.4f}, Accuracy: {ev['correct']}/{ev['n']} "
                  f"({test_acc:.2f}%)" + (" with flip TTA" if cfg.tta else ""))
            run.end_epoch({"epoch": epoch, "lr": lr_at(run.step + steps_per_epoch - 1), "train_loss": train_loss,
                           "train_acc": train_acc, "test_loss": ev["loss"], "test_acc": test_acc,
                           "test_correct": ev["correct"], "test_n": ev["n"], "train_seconds": train_seconds,
                           "eval_seconds": eval_seconds}, learner, train_loader)

        # The weights, and what the run shows: the pictures and README.md, the report to hand in.
        if ev is None:                       # resumed from a finished run: nothing was evaluated
            ev = evaluate(learner.final, test_loader, rt, cfg.tta)
        run.finish(learner.final.state_dict())
        report.make(run.record, learner.final, data, ev, cfg)
        run.record["timings"]["total_seconds"] = time.perf_counter() - t_start
        run.write()
        report.write_markdown(run.record, cfg.out_dir)
    print(report.end_line(run.record))
    return run.record


# ==============================================================================================
# main and the command line

def main(**overrides) -> dict:
    """Run the recipe; returns the run's record (also in <out_dir>/metrics.json). With seeds=N
    above 1, a sweep, or under torchrun: a series of runs and their statistics (series.py);
    returns the summary.

    Keywords are the fields of Config (see `python train.py --help`). Mistakes raise UsageError.
    """
    cfg, ckpt = Config.for_run(overrides)        # every mistake reported before anything runs
    if cfg.seeds > 1 or cfg.sweep or cluster.launched():
        return series.run_series(cfg, Config, train)
    return train(cfg, ckpt)


if __name__ == "__main__":
    sys.exit(settings.cli(main, Config))
