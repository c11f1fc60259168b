"""Speed of this repository's training path, measured side by side with the conventional one.

    python bench.py --quick      # smaller sizes: a quick look on a CPU
    python bench.py              # full sizes; on CUDA also the whole 24-epoch recipe

Every row of the table is measured in the same run on the same machine:
  1. augmentation: one epoch of batches from DeviceLoader against torchvision.transforms.v2
     per-sample transforms in a DataLoader with 0 and 2 workers;
  2. training throughput: our step (automatic precision, channels_last) against a naive fp32 NCHW
     eager step of the same network and batch size;
  3. loop overhead: a training epoch of train.py's loop against its bare steps back to back;
  4. CUDA only: the full recipe (24 epochs, CIFAR-10-sized synthetic data, fixed LRs), eager and
     with torch.compile, against the arithmetic floor;
  5. peak memory.

    python bench.py --variants   # instead of rows 1-4: the variants of the step, side by side
    python bench.py --torchrun   # instead: what torchrun costs a series here (docs/scaling.md)

--variants times what a profile (docs/profile_gpu.py) may call for, each against today's step,
in the same run: the recipe's training step (a) eager, as train.py runs it today; (b) with the
model compiled, as train.py's --compile does; (c) compiled whole with torch.compile (forward,
loss, backward, grad scaler and SGD step, PyTorch's "compiled optimizer" recipe); (d) the whole
step as CUDA graphs (torch.compile mode="reduce-overhead"; CUDA only); (e) eager with SGD's
foreach=True and foreach=False (no fused row: fused SGD keeps a bad momentum buffer after an
overflowed first fp16 step, which tests/test_train.py guards against); (f) one evaluation pass
of 10,000 images at batch 500, 1000, 2500 and 5000. Each row gives seconds per step, images/s,
the one-time compile (or warm-up) seconds apart, and the 24-epoch training time it implies
(seconds per step x 2,328 steps: an estimate, loader and loop not included). CUDA defaults:
10 warm-up steps, then 3 rounds of 100 timed steps of every variant in turn, the best round kept.

On a GPU, after `python -m experiments.profile_gpu --out "$OUT"` (its docstring gives the order):

    python bench.py --variants --json "$OUT/bench_variants_{gpu}.json"     # a few minutes
    python bench.py --variants --precision fp16 --json "$OUT/bench_variants_{gpu}_fp16.json"   # the T4 path

It answers: how much of the step the compile and CUDA graphs remove (the host's share the
profile measures), whether the optimizer's foreach matters, and which evaluation batch is
fastest; and so how far each is from the goal of 24 epochs in 6 s. Dry run on the CPU: python bench.py --variants --device cpu --precision fp32 --width 8 --batch-size 64
--compile-backend aot_eager --eval-images 512 --eval-batch-sizes 64,128,256

--torchrun times one small series (synthetic data, given LRs) as `python train.py --seeds K` in
one process, and under torchrun with 1 and 2 processes (the CPU's cores split between them), each
command's wall clock from start to end, the median of --repeats; then the same commands once
every run is finished (each run kept, nothing trained): start-up, rendezvous and reading the
records, which is what torchrun adds to a series. On a CPU, two processes share the same cores,
so they cannot finish a series sooner than one; on several GPUs each process has its own.

Nothing here is a test: tests/ checks correctness, this file measures speed.
"""
import argparse
import dataclasses
import json
import os
import platform
import re
import resource
import sys
import time

import torch

import data as cifar
import train
import utils
from custom_resnet import CustomResNet

# Peak dense tensor-core TFLOP/s from the vendors' datasheets, at the precision the recipe uses
# there (bf16; fp16 on the T4 and V100), by a piece of torch.cuda.get_device_name(). The first
# piece found wins, so a longer name comes before its prefix ("L40S" before "L40" before "L4").
# A GPU not listed gets no floor in the table, only its achieved TFLOP/s.
DATASHEET_TFLOPS = {"H100 NVL": 835, "H100 PCIe": 756, "H100": 989, "H200": 989, "A100": 312,
                    "A10": 125, "L40S": 362, "L40": 181, "L4": 121, "T4": 65, "V100": 125}


def gflop_per_image(width=64):
    """(training, evaluation) GFLOP per 32x32 image of CustomResNet(width), counted by
    torch.utils.flop_counter on shapes only (the meta device: nothing is computed). Convolutions
    and the linear layer count, BatchNorm and ReLU do not: SPEC section 5 gives 2.27 and 0.76
    at width 64, and the tests hold this function to them."""
    from torch.utils.flop_counter import FlopCounterMode
    with torch.device("meta"):
        model, x = CustomResNet(width=width), torch.randn(1, 3, 32, 32)
    with FlopCounterMode(display=False) as forward:
        model(x)
    with FlopCounterMode(display=False) as train_step:
        model(x).sum().backward()
    return train_step.get_total_flops() / 1e9, forward.get_total_flops() / 1e9


def datasheet_tflops(gpu_name):
    for piece, tflops in DATASHEET_TFLOPS.items():
        if piece in gpu_name:
            return tflops
    return None


def device_slug(rt):
    """A short name of the machine for file names: the GPU's piece of DATASHEET_TFLOPS ("h100",
    "h100-nvl", "t4"), else its name in lower case, else the device type ("cpu")."""
    gpu = rt.describe().get("gpu")
    if not gpu:
        return rt.device.type
    piece = next((p for p in DATASHEET_TFLOPS if p in gpu), gpu)
    return re.sub(r"[^a-z0-9]+", "-", piece.lower()).strip("-")


# ----------------------------------------------------------------------------------------------
# 1. Augmentation

class Cutout:
    """Per-sample Cutout for the conventional pipeline: zero one 8x8 square (DeVries & Taylor)."""

    def __init__(self, length=8):
        self.length = length

    def __call__(self, img):                                   # (3, 32, 32)
        cy, cx = torch.randint(0, img.shape[-2], (1,)).item(), torch.randint(0, img.shape[-1], (1,)).item()
        h = self.length // 2
        img = img.clone()
        img[:, max(0, cy - h):cy + h, max(0, cx - h):cx + h] = 0
        return img


class PerSampleDataset(torch.utils.data.Dataset):
    def __init__(self, images, labels):
        from torchvision.transforms import v2
        self.images, self.labels = images, labels
        self.transform = v2.Compose([
            v2.RandomCrop(32, padding=4), v2.RandomHorizontalFlip(), Cutout(8),
            v2.ToDtype(torch.float32, scale=True), v2.Normalize(cifar.CIFAR10_MEAN, cifar.CIFAR10_STD)])

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return self.transform(self.images[i]), self.labels[i]


def seconds_per_epoch(batches, rt):
    """Seconds to produce every batch of one pass, the device's work included."""
    timer = rt.timer().start()
    for x, y in batches:
        pass
    return timer.stop()


def bench_augmentation(images, labels, rt, batch_size, rows, workers=(0, 2)):
    """Seconds for one pass: {"DeviceLoader": s, "torchvision v2, 0 workers": s, ...}."""
    loader = cifar.DeviceLoader(images, labels, batch_size, train=True, device=rt.device)
    seconds_per_epoch(loader, rt)                              # warm-up pass
    ours = min(seconds_per_epoch(loader, rt) for _ in range(3))
    rows.append(("augment: DeviceLoader epoch", f"{ours:.3f} s", f"{len(images):,} images on {rt.device}"))
    seconds = {"DeviceLoader": ours}
    for n in workers:
        dl = torch.utils.data.DataLoader(PerSampleDataset(images, labels), batch_size=batch_size,
                                         shuffle=True, drop_last=True, num_workers=n)
        conventional = seconds_per_epoch(dl, utils.pick_runtime("cpu", "fp32"))   # it runs on the CPU
        rows.append((f"augment: torchvision v2, {n} workers", f"{conventional:.3f} s",
                     f"DeviceLoader is {conventional / ours:.1f}x faster"))
        seconds[f"torchvision v2, {n} workers"] = conventional
    return seconds


# ----------------------------------------------------------------------------------------------
# 2. Training throughput

def time_steps(step, warmup, steps, rt):
    for _ in range(warmup):
        step()
    timer = rt.timer().start()
    for _ in range(steps):
        step()
    return timer.stop() / steps


def learner_of(model, rt):
    """A train.Learner of `model` with the recipe's SGD settings, at rt's precision."""
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True, weight_decay=5e-4)
    return train.Learner(model, model, opt, rt.grad_scaler(), torch.nn.CrossEntropyLoss(), rt)


def make_step(learner, x, y):
    """train.py's training step on a fixed batch, at the learner's precision (fp32: no autocast)."""
    def step(x=x, y=y):
        train.train_step(learner, x, y)
    return step


def bench_throughput(rt, batch_size, warmup, steps, rows):
    """Seconds per step: (naive fp32 NCHW, ours)."""
    torch.manual_seed(0)
    x = torch.randn(batch_size, 3, 32, 32, device=rt.device)
    y = torch.randint(0, 10, (batch_size,), device=rt.device)
    naive = CustomResNet().to(rt.device)                                 # fp32, NCHW
    naive_s = time_steps(make_step(learner_of(naive, utils.Runtime(rt.device, "fp32")), x, y), warmup, steps, rt)
    ours_model = CustomResNet().to(rt.device, memory_format=torch.channels_last)
    x_cl = x.contiguous(memory_format=torch.channels_last)
    ours_s = time_steps(make_step(learner_of(ours_model, rt), x_cl, y), warmup, steps, rt)
    # On CUDA, "fp32" is PyTorch's default there: cuDNN convolutions in TF32, as a naive loop gets.
    naive_label = "naive fp32 (TF32 convolutions) NCHW" if rt.device.type == "cuda" else "naive fp32 NCHW"
    rows.append((f"train step: {naive_label}", f"{batch_size / naive_s:,.0f} img/s", f"{naive_s:.3f} s/step"))
    rows.append((f"train step: ours ({rt.precision}, channels_last)", f"{batch_size / ours_s:,.0f} img/s",
                 f"{ours_s:.3f} s/step, {naive_s / ours_s:.2f}x the naive loop"))
    return naive_s, ours_s


# ----------------------------------------------------------------------------------------------
# 3. Loop overhead

def bench_loop_overhead(rt, n_images, batch_size, rows, repeats=2):
    """Seconds: (train.py's epoch, its bare steps back to back), each the fastest of `repeats`
    runs taken in turn (bare, epoch, bare, epoch, ...), so a drift of the machine's speed
    during the bench does not land on one side only."""
    d = cifar.synthetic_cifar10(n_images, 16)
    loader = cifar.DeviceLoader(d.train_images, d.train_labels, batch_size, train=True, device=rt.device)
    torch.manual_seed(0)
    learner = learner_of(CustomResNet().to(rt.device, memory_format=torch.channels_last), rt)
    batches = list(loader)                       # pre-made batches: the bare steps read nothing
    step = make_step(learner, *batches[0])
    step()                                       # warm-up (allocations, momentum buffers)
    bare, full = [], []
    for _ in range(repeats):
        t = rt.timer().start()
        for x, y in batches:                     # the same model, optimizer and scaler as the epoch,
            step(x, y)                           # queued back to back as the epoch queues them
        bare.append(t.stop())
        t = rt.timer().start()
        train.train_one_epoch(learner, loader, lambda s: 0.01, 1, train.Config(progress=True))
        full.append(t.stop())
    full, bare = min(full), min(bare)
    rows.append(("loop: train.py epoch vs bare steps", f"{100 * (full / bare - 1):+.1f} %",
                 f"{full:.2f} s vs {bare:.2f} s, {len(batches)} steps, best of {repeats} (goal <= 5%)"))
    return full, bare


# ----------------------------------------------------------------------------------------------
# 4. The whole recipe, CUDA only

def bench_recipe(rt, compile, rows, n_train=50_000, n_test=10_000, out_dir="/tmp", **overrides):
    """The whole recipe through train.main on synthetic data of CIFAR-10's size, with fixed LRs
    (no range test), at rt's precision. On CUDA, cuDNN has already tuned its kernels for the
    training shapes in rows 2 and 3, as a warm-up would.

    Returns the run's record with "achieved_tflops" (training FLOP over training seconds) and
    "floor_seconds" (the training FLOP at the GPU's datasheet peak, or None), both about
    training alone, as train_seconds is: evaluation is timed apart."""
    label = "compiled" if compile else "eager"
    settings = dict(synthetic=True, synthetic_train=n_train, synthetic_test=n_test, lr_min=0.04,
                    lr_max=0.4, plots=False, progress=False, compile=compile, device=str(rt.device),
                    precision=rt.precision, out_dir=os.path.join(out_dir, f"bench_recipe_{label}"),
                    **overrides)
    r = train.main(**settings)
    cfg, tm = r["config"], r["timings"]
    images = r["steps_per_epoch"] * cfg["batch_size"] * cfg["epochs"]       # the last partial batch is dropped
    train_tflop = images * gflop_per_image(cfg["width"])[0] / 1000           # 2,700 for the recipe
    r["achieved_tflops"] = train_tflop / tm["train_seconds"]
    gpu = rt.describe().get("gpu")
    # The datasheet peaks are for tensor-core bf16/fp16: no floor for an fp32 run.
    peak = datasheet_tflops(gpu or "") if rt.precision in ("bf16", "fp16") else None
    r["floor_seconds"] = train_tflop / peak if peak else None
    floor = f", floor {r['floor_seconds']:.1f} s at the {peak} TFLOP/s datasheet peak" if peak else ""
    rows.append((f"recipe {cfg['epochs']} epochs, {label}, {rt.precision}", f"{tm['train_seconds']:.1f} s train",
                 f"{tm['images_per_second']:,.0f} img/s, {r['achieved_tflops']:.1f} TFLOP/s{floor}, "
                 f"eval {tm['eval_seconds']:.1f} s, compile {tm['compile_seconds']:.0f} s "
                 f"({gpu or rt.device})"))
    return r


# ----------------------------------------------------------------------------------------------
# 5. Variants of the step (--variants): the fixes a profile may call for, against today's step

VARIANTS = {                     # key: row label
    "eager": "(a) step: eager (today's)",
    "compile-model": "(b) step: torch.compile(model)",
    "compile-step": "(c) step: torch.compile(whole step)",
    "cuda-graphs": "(d) step: CUDA graphs of the whole step",
    "foreach": "(e) step: eager, SGD foreach=True",
    "for-loop": "(e) step: eager, SGD foreach=False",
}
COMPILED = ("compile-model", "compile-step", "cuda-graphs")
EVAL_BATCH_SIZES = (500, 1000, 2500, 5000)
RECIPE_EPOCHS, RECIPE_IMAGES = 24, 50_000


def set_lr(optimizer, lr):
    """Every group's LR: written into the group's tensor where it holds one (a compiled step
    reads the tensor, so a new LR neither recompiles nor re-records a CUDA graph), else assigned
    as train_one_epoch does."""
    for group in optimizer.param_groups:
        if isinstance(group["lr"], torch.Tensor):
            group["lr"].fill_(lr)
        else:
            group["lr"] = lr


def variant_step(key, rt, width=64, seed=0, backend="inductor"):
    """(step, model, optimizer) of variant `key` (a key of VARIANTS): step(x, y, lr) sets the LR
    and runs one train.train_step, returning its (logits, loss).

    The model, optimizer and grad scaler are train.build's, so every variant starts from the same
    weights and uses the recipe's SGD settings; only what the variant changes differs:
    compile-model compiles the model as train.py's --compile does; compile-step compiles
    train.train_step whole (forward, loss, backward, grad scaler and the SGD step: PyTorch's
    "compiled optimizer" recipe; the LR is then a tensor on the device); cuda-graphs compiles it
    with mode="reduce-overhead", which replays the compiled graphs as CUDA graphs (CUDA only);
    foreach / for-loop set SGD's foreach (PyTorch's default, which train.py keeps, is foreach on
    CUDA). backend: torch.compile's (inductor; aot_eager or eager check the wiring quickly on
    the CPU without generating code)."""
    learner = train.build(train.Config.from_keywords(dict(width=width, seed=seed)), rt, steps_per_epoch=1)
    model, optimizer = learner.model, learner.optimizer
    if key in ("compile-step", "cuda-graphs", "foreach", "for-loop"):
        settings = dict(optimizer.defaults)
        if key in ("foreach", "for-loop"):
            settings["foreach"] = key == "foreach"
        else:
            settings["lr"] = torch.tensor(float(settings["lr"]), device=rt.device)
        optimizer = torch.optim.SGD(model.parameters(), **settings)
    net, step_fn, mark_step = model, train.train_step, False
    if key == "compile-model":
        net = torch.compile(model, dynamic=False, backend=backend)
    elif key == "compile-step":
        step_fn = torch.compile(train.train_step, dynamic=False, backend=backend)
    elif key == "cuda-graphs":
        if rt.device.type != "cuda":
            raise ValueError("CUDA graphs need a CUDA device")
        step_fn = torch.compile(train.train_step, dynamic=False, mode="reduce-overhead")
        mark_step = True
    elif key not in VARIANTS:
        raise ValueError(f"unknown variant {key!r}: one of {', '.join(VARIANTS)}")
    learner = dataclasses.replace(learner, net=net, optimizer=optimizer)

    def step(x, y, lr):
        set_lr(optimizer, lr)
        if mark_step:                      # a new iteration: the last one's graph outputs may be reused
            torch.compiler.cudagraph_mark_step_begin()
        return step_fn(learner, x, y)
    return step, model, optimizer


def compile_counters():
    """(graphs compiled, CUDA graph skips) so far in this process: torch's internal counters,
    (0, 0) where a version has none."""
    try:
        from torch._dynamo.utils import counters
        return counters["stats"]["unique_graphs"], counters["inductor"]["cudagraph_skips"]
    except (ImportError, KeyError, AttributeError):
        return 0, 0


def run_steps(step, batches, lrs, first=0):
    for i, lr in enumerate(lrs):
        step(*batches[(first + i) % len(batches)], lr)


def bench_variants(rt, rows, keys=tuple(VARIANTS), width=64, batch_size=512, warmup=10, steps=100, repeats=3,
                   backend="inductor", n_batches=8):
    """Seconds per step of each variant: every variant first runs `warmup` steps (the compile,
    cuDNN's autotuning), then `repeats` rounds, each timing `steps` steps of every variant in
    turn, so a drift of the machine's speed reaches all of them; the best round is kept. The
    batches are `n_batches` DeviceLoader batches made before (the loader is not timed here), the
    LRs one cycle from 0.04 to 0.4, the same for every variant. Returns {key: record}, None for
    a CUDA-only variant elsewhere."""
    d = cifar.synthetic_cifar10(n_batches * batch_size, 16)
    batches = list(cifar.DeviceLoader(d.train_images, d.train_labels, batch_size, train=True, device=rt.device))
    total = warmup + repeats * steps
    lrs = [train.one_cycle_lr(s, total, total * 5 // 24, 0.04, 0.4) for s in range(total)]
    made, out = {}, {}
    for key in keys:
        if key == "cuda-graphs" and rt.device.type != "cuda":
            out[key] = None
            continue
        graphs, skips = compile_counters()
        step, _, _ = variant_step(key, rt, width, backend=backend)
        t0 = time.perf_counter()
        run_steps(step, batches, lrs[:warmup])
        rt.sync()
        made[key] = step
        out[key] = {"label": VARIANTS[key], "warmup_steps": warmup, "warmup_seconds": time.perf_counter() - t0,
                    "graphs": compile_counters()[0] - graphs, "cudagraph_skips": compile_counters()[1] - skips,
                    "rounds": []}
    for r in range(repeats):
        first = warmup + r * steps
        for key, step in made.items():
            timer = rt.timer().start()
            run_steps(step, batches, lrs[first:first + steps], first)
            out[key]["rounds"].append(timer.stop() / steps)
    recipe_steps = RECIPE_EPOCHS * (RECIPE_IMAGES // batch_size)
    base = min(out["eager"]["rounds"]) if out.get("eager") else None
    for key in keys:
        v = out[key]
        if v is None:
            rows.append((VARIANTS[key], "CUDA only", f"not run on {rt.device.type}"))
            continue
        s = v["seconds_per_step"] = min(v["rounds"])
        v["images_per_second"] = batch_size / s
        v["one_time_seconds"] = max(0.0, v["warmup_seconds"] - warmup * s)     # compile, autotuning
        v["recipe_seconds_estimate"] = recipe_steps * s
        detail = f"{1e3 * s:.2f} ms/step, best of {repeats} x {steps} steps"
        if base and key != "eager":
            detail += f", {base / s:.2f}x eager"
        if key in COMPILED:
            detail += f", compile {v['one_time_seconds']:.1f} s once ({v['graphs']} graph{'s' * (v['graphs'] != 1)}"
            detail += f", {v['cudagraph_skips']} CUDA graph skips)" if key == "cuda-graphs" else ")"
        detail += f"; {recipe_steps:,} steps (24 epochs) ~ {v['recipe_seconds_estimate']:.1f} s (estimate: s/step x steps)"
        rows.append((VARIANTS[key], f"{v['images_per_second']:,.0f} img/s", detail))
    return out


def bench_eval_batch_sizes(rt, rows, batch_sizes=EVAL_BATCH_SIZES, n_images=10_000, width=64, repeats=3):
    """Seconds of one train.evaluate pass over n_images at each evaluation batch size (a warm-up
    pass first, for cuDNN's autotuning of the shape; then the best of `repeats`): {batch: s}."""
    d = cifar.synthetic_cifar10(16, n_images)
    model = train.build(train.Config.from_keywords(dict(width=width)), rt, steps_per_epoch=1).model
    out = {}
    for b in batch_sizes:
        loader = cifar.DeviceLoader(d.test_images, d.test_labels, b, train=False, device=rt.device)
        train.evaluate(model, loader, rt)
        seconds = []
        for _ in range(repeats):
            timer = rt.timer().start()
            train.evaluate(model, loader, rt)
            seconds.append(timer.stop())
        s = out[b] = min(seconds)
        rows.append((f"(f) eval: {n_images:,} images, batch {b}", f"{s:.3f} s",
                     f"{n_images / s:,.0f} img/s, best of {repeats}; x{RECIPE_EPOCHS} epochs = "
                     f"{RECIPE_EPOCHS * s:.1f} s"))
    return out


# ----------------------------------------------------------------------------------------------
# 6. torchrun: the cost of spreading a series over processes

# A series of small runs: synthetic data, given LRs (no range test), a couple of seconds a run on a CPU.
SERIES = ["--synthetic", "--synthetic-train", "1024", "--synthetic-test", "256", "--width", "8", "--batch-size",
          "128", "--epochs", "2", "--lr-max", "0.2", "--precision", "fp32", "--no-progress", "--no-plots"]


def bench_torchrun(rows, runs, nprocs, repeats, device="auto"):
    """Wall seconds of a series of `runs` runs (SERIES) as one process and under torchrun with
    each of `nprocs` processes, the median of `repeats` (each in a fresh folder); then the same
    commands over the finished series (every run kept): the start-up torchrun adds."""
    import shutil
    import statistics
    import subprocess
    import tempfile
    root = os.path.dirname(os.path.abspath(__file__))
    commands = {"python train.py (1 process)": [sys.executable, "train.py"]}
    for n in nprocs:
        commands[f"torchrun --nproc-per-node {n}"] = [sys.executable, "-m", "torch.distributed.run",
                                                      "--nproc-per-node", str(n), "train.py"]
    device = ["--device", "cpu" if device == "auto" and not torch.cuda.is_available() else device]
    record, folder = {"runs": runs, "series": SERIES + device, "train": {}, "kept": {}}, tempfile.mkdtemp()
    try:
        for label, cmd in commands.items():
            for phase in ("train", "kept"):
                seconds = []
                for i in range(repeats):
                    out = os.path.join(folder, f"{len(record[phase])}-{i}")
                    if phase == "train":
                        shutil.rmtree(out, ignore_errors=True)
                    t0 = time.perf_counter()
                    done = subprocess.run([*cmd, *SERIES, *device, "--seeds", str(runs), "--out-dir", out], cwd=root,
                                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
                    seconds.append(time.perf_counter() - t0)
                    if done.returncode:                 # our one line, not torchrun's report after it
                        ours = [l for l in done.stderr.splitlines() if l.startswith(("error:", "interrupted:"))]
                        raise SystemExit(f"{label} failed: " + (ours or done.stderr.strip().splitlines()[-1:] or ["?"])[0])
                record[phase][label] = seconds
                what = f"{runs} runs trained" if phase == "train" else f"{runs} runs kept, none trained"
                rows.append((f"series: {label}, {what}", f"{statistics.median(seconds):.1f} s",
                             f"median of {repeats}: " + ", ".join(f"{s:.1f}" for s in seconds)))
                print(rows[-1], flush=True)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return {"torchrun": record}


def format_table(rows):
    """Rows of (row, result, detail) strings as aligned columns under a header."""
    rows = [("row", "result", "detail"), *rows]
    width = [max(len(r[i]) for r in rows) for i in range(3)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, width)).rstrip() for r in rows)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="smaller sizes, for a quick look on a CPU")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | mps")
    p.add_argument("--precision", default="auto", help="auto | fp32 | bf16 | fp16")
    p.add_argument("--batch-size", type=int, default=512)
    p.add_argument("--json", default="", help="also write the rows to this JSON file ({gpu} in the path: the "
                   "GPU's short name, e.g. h100)")
    v = p.add_argument_group("variants of the step (--variants: only these rows, section 5)")
    v.add_argument("--variants", action="store_true", help="time the variants of the training step and the "
                   "evaluation batch sizes, side by side, instead of the default rows")
    v.add_argument("--width", type=int, default=64, help="network width of the variants")
    v.add_argument("--steps", type=int, default=None, help="timed steps per round (default 100 on CUDA, 3 elsewhere)")
    v.add_argument("--warmup", type=int, default=None, help="steps before timing (default 10 on CUDA, 3 elsewhere)")
    v.add_argument("--repeats", type=int, default=None, help="rounds, the best kept (default 3 on CUDA, 1 elsewhere)")
    v.add_argument("--compile-backend", default="inductor", help="torch.compile backend of (b) and (c): "
                   "inductor; aot_eager or eager for a quick check of the wiring on the CPU")
    t = p.add_argument_group("torchrun (--torchrun: only these rows)")
    t.add_argument("--torchrun", action="store_true", help="time a series in one process and under torchrun")
    t.add_argument("--runs", type=int, default=4, help="runs of the series (--seeds)")
    t.add_argument("--nproc", default="1,2", help="torchrun's --nproc-per-node values to time")
    v.add_argument("--eval-images", type=int, default=10_000)
    v.add_argument("--eval-batch-sizes", default=",".join(map(str, EVAL_BATCH_SIZES)))
    a = p.parse_args(argv)
    started = time.perf_counter()
    rt = utils.pick_runtime(a.device, a.precision)
    gpu = rt.device.type == "cuda"
    if a.variants and rt.precision == "fp16" and not gpu:
        p.error("--precision fp16 (autocast with a grad scaler, the T4's path) is measured on CUDA only; "
                "on this device use --precision fp32 or bf16")
    rows = []
    print(f"bench.py on {rt.device} ({rt.describe().get('gpu', platform.processor() or platform.machine())}), "
          f"{torch.get_num_threads()} CPU threads, torch {torch.__version__}, precision {rt.precision}",
          flush=True)
    record = {}
    if a.variants:
        record = run_variants(rt, a, rows)
    elif a.torchrun:
        record = bench_torchrun(rows, a.runs, [int(n) for n in a.nproc.split(",")], a.repeats or 3, a.device)
    else:
        run_default(rt, a, rows)
    rss_bytes = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1 if sys.platform == "darwin" else 1024)
    rows.append(("peak CPU RSS", f"{rss_bytes / 2**30:.2f} GiB", ""))      # ru_maxrss: KiB, bytes on macOS
    print("\n" + format_table(rows))
    result = {"argv": sys.argv if argv is None else ["bench.py", *argv], "date": time.strftime("%Y-%m-%d"),
              "runtime": rt.describe(), "seconds": round(time.perf_counter() - started, 1), "rows": rows, **record}
    if a.json:
        with open(a.json.replace("{gpu}", device_slug(rt)), "w") as f:
            json.dump(result, f, indent=2)
    return result


def run_default(rt, a, rows):
    """Rows 1 to 4 and the peak memory on CUDA."""
    gpu = rt.device.type == "cuda"
    n_aug = 50_000                                   # one CIFAR-10 training epoch, in every mode
    d = cifar.synthetic_cifar10(n_aug, 16)
    bench_augmentation(d.train_images, d.train_labels, rt, a.batch_size, rows)
    print(*rows[-3:], sep="\n", flush=True)
    warmup, steps = (1, 3) if a.quick or not gpu else (10, 50)
    bench_throughput(rt, a.batch_size, warmup, steps, rows)
    print(*rows[-2:], sep="\n", flush=True)
    loop_images = (10 if a.quick or not gpu else 97) * a.batch_size
    bench_loop_overhead(rt, loop_images, a.batch_size, rows)
    print(rows[-1], flush=True)
    if gpu:
        torch.cuda.reset_peak_memory_stats()
        bench_recipe(rt, compile=False, rows=rows, batch_size=a.batch_size)
        if not a.quick:
            bench_recipe(rt, compile=True, rows=rows, batch_size=a.batch_size)
        rows.append(("peak CUDA memory allocated", f"{torch.cuda.max_memory_allocated() / 2**30:.2f} GiB", ""))
    else:
        rows.append(("recipe 24 epochs (CUDA only)", "unmeasured", "no CUDA GPU here"))


def run_variants(rt, a, rows):
    """Section 5: the variants of the step, then the evaluation batch sizes; their records."""
    gpu = rt.device.type == "cuda"
    steps = a.steps or (100 if gpu else 3)
    warmup = a.warmup if a.warmup is not None else (10 if gpu else 3)
    repeats = a.repeats or (3 if gpu else 1)
    if gpu:
        torch.cuda.reset_peak_memory_stats()
    variants = bench_variants(rt, rows, width=a.width, batch_size=a.batch_size, warmup=warmup, steps=steps,
                              repeats=repeats, backend=a.compile_backend)
    print(*rows, sep="\n", flush=True)
    sizes = [int(b) for b in a.eval_batch_sizes.split(",")]
    evaluation = bench_eval_batch_sizes(rt, rows, sizes, a.eval_images, a.width, repeats=repeats)
    print(*rows[-len(sizes):], sep="\n", flush=True)
    if gpu:
        rows.append(("peak CUDA memory allocated", f"{torch.cuda.max_memory_allocated() / 2**30:.2f} GiB",
                     "all variants held at once"))
    return {"variants": variants, "evaluation_seconds": evaluation,
            "settings": dict(width=a.width, batch_size=a.batch_size, steps=steps, warmup=warmup, repeats=repeats,
                             compile_backend=a.compile_backend, eval_images=a.eval_images)}


if __name__ == "__main__":
    main()
