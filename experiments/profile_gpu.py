"""Where the recipe's training time goes: torch.profiler over epochs of train.py's own loop.

For a GPU session with 15 minutes of device time (the machine's start counts too), in this order;
everything is written under $OUT, since only files under $OUT come back from the device machine
(copy them to experiments/measurements/):

    # 1. one device call, so the machine starts once: the profile, then bench.py's variants
    python -m experiments.profile_gpu --out "$OUT" && python bench.py --variants --json "$OUT/bench_variants_{gpu}.json"
    # 2. if 5 minutes are left: the T4's path, fp16 with the grad scaler, the same two measurements
    python -m experiments.profile_gpu --precision fp16 --out "$OUT" && python bench.py --variants --precision fp16 --json "$OUT/bench_variants_{gpu}_fp16.json"
    # 3. if time is still left: python -m pytest -q tests/test_accelerators.py (the device paths)

This script writes profile_<gpu>_<precision>.json and .md (e.g. profile_h100_bf16.json); {gpu}
in bench.py's --json is the same short name. --epochs 1 halves the profile's analysis time,
which grows with the number of events.

What the profile answers: what share of the device time the convolutions, BatchNorm, the
elementwise ops, max-pooling, the optimizer step, the augmentation, the loss and the evaluation
passes take; how much of the wall time the device sits idle waiting for the host (the host gap:
what torch.compile and CUDA graphs could win); and how often per step the host waits for the
device (synchronisations). bench.py --variants then measures the fixes such a profile may call
for, side by side with the eager step that train.py runs.

How: the model, optimizer and grad scaler come from train.build, the batches from DeviceLoader
on synthetic data of CIFAR-10's size, the steps from train.train_one_epoch with fixed LRs (one
cycle from 0.04 to 0.4, bench.py's), and after each epoch one train.evaluate pass, as
train.train() does. One warm-up epoch (cuDNN's autotuning, the allocator), then --epochs epochs
timed without the profiler, then the same number profiled. Record ranges mark the loader, the
model's forward, each training epoch and each evaluation; a kernel belongs to the category of the
ops that launched it (CUDA), an op's own CPU time to the category of its chain of ops (CPU).

Dry run on the CPU (the same two files, CPU time instead of device time):

    python -m experiments.profile_gpu --device cpu --train-images 512 --test-images 256 --batch-size 64 --width 8 --epochs 1 --out /tmp/prof
"""
import argparse
import json
import os
import re
import shlex
import sys
import time
from collections import Counter

import torch
from torch import nn
from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity, profile, record_function

import bench
import data as cifar
import train
import utils

# Record ranges this script adds around the loop's parts: a category is found by its ops' names
# and by the ranges around them.
MARK_TRAIN = "profile: train epoch"
MARK_EVAL = "profile: evaluate"
MARK_LOADER = "profile: DeviceLoader"
MARK_MODEL = "profile: model"

# ----------------------------------------------------------------------------------------------
# Categories: each op or kernel is given one, by the names of the ops around it

CATEGORIES = {       # name: what it holds (the order of the tables)
    "convolutions": "convolutions and the linear layer, forward and backward (conv, cuDNN, GEMM, xmma, "
                    "implicit-GEMM kernels)",
    "batchnorm": "BatchNorm forward and backward",
    "elementwise": "ReLU, the residual adds, the logit scale and other elementwise ops of the network",
    "maxpool": "max-pooling forward and backward",
    "casts": "autocast casts and layout copies inside the network",
    "optimizer": "the SGD step (foreach / multi_tensor kernels), zero_grad, the grad scaler's unscale and update",
    "augmentation": "DeviceLoader's batches: crop and flip (index_select), Cutout (index_fill), normalisation",
    "loss": "cross-entropy (log_softmax, nll_loss), forward and backward",
    "evaluation": "the evaluation passes, one after each training epoch (their own breakdown is given apart)",
    "other": "the loop's bookkeeping (loss and accuracy sums, the LR), gradient accumulation, unattributed work",
}

# A name matches a rule when the pattern is found in it. A chain of ops (outermost first, the
# kernel last) takes the category of the first rule that any of its names matches; the network's
# rules apply only inside the model's forward or the autograd engine (the backward), so the
# loop's own adds and sums land in "other", not "elementwise". BatchNorm comes before the
# convolutions because cuDNN names both.
RULES = [
    ("evaluation", re.compile(f"^{MARK_EVAL}$")),
    ("augmentation", re.compile(f"^{MARK_LOADER}$|index_select|index_fill|^aten::gather$")),
    ("optimizer", re.compile(r"^Optimizer\.|(?i:sgd)|_foreach_|multi_tensor|^aten::_amp_")),
    ("loss", re.compile(r"cross_entropy|log_softmax|nll_loss|NllLoss|LogSoftmax")),
    ("other", re.compile(r"AccumulateGrad")),
]
NETWORK_RULES = [
    ("batchnorm", re.compile(r"batch_norm|BatchNorm|bn_fw|bn_bw")),
    ("convolutions", re.compile(r"conv|Convolution|gemm|xmma|implicit|^aten::(mm|linear|addmm|matmul)$|MmBackward")),
    ("maxpool", re.compile(r"max_pool|MaxPool")),
    ("casts", re.compile(r"^aten::(to|_to_copy|copy_|contiguous|clone)$|ToCopyBackward|Memcpy|Memset|copy_kernel"
                         r"|nchwToNhwc|nhwcToNchw")),
    ("elementwise", re.compile(r"relu|Relu|threshold|Threshold|clamp|^aten::(add|mul|sub|div)_?$|AddBackward"
                               r"|MulBackward|elementwise")),
]
IN_NETWORK = re.compile(f"^{MARK_MODEL}$|^autograd::engine|Backward[0-9]*$")
ALL_RULES = RULES + NETWORK_RULES


def rule_mask(name, _cache={}):
    """Bit i set when rule i of ALL_RULES matches `name`; the last bit: the name is the model's
    forward or the autograd engine's."""
    if name not in _cache:
        bits = sum(1 << i for i, (_, pattern) in enumerate(ALL_RULES) if pattern.search(name))
        _cache[name] = bits | (1 << len(ALL_RULES) if IN_NETWORK.search(name) else 0)
    return _cache[name]


def category_of_mask(mask, inner=False):
    """The category of a chain whose names matched the rules in `mask`. inner: the category
    inside an evaluation pass (the evaluation rule skipped)."""
    in_network = mask >> len(ALL_RULES) & 1
    for i, (name, _) in enumerate(ALL_RULES):
        if (inner and name == "evaluation") or (i >= len(RULES) and not in_network):
            continue
        if mask >> i & 1:
            return name
    return "other"


def category(chain, inner=False):
    """The category of a chain of op and kernel names, outermost first:
    category(["profile: model", "aten::conv2d", "aten::cudnn_convolution"]) == "convolutions"."""
    mask = 0
    for name in chain:
        mask |= rule_mask(name)
    return category_of_mask(mask, inner)


# ----------------------------------------------------------------------------------------------
# The run: train.py's loop with record ranges around its parts

class MarkedModel(nn.Module):
    """The model, its forward inside a record range (its parameters are the model's own)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        with record_function(MARK_MODEL):
            return self.model(x)


class MarkedLoader:
    """A DeviceLoader whose every batch is made inside a record range."""

    def __init__(self, loader):
        self.loader = loader

    def __len__(self):
        return len(self.loader)

    def __iter__(self):
        batches = iter(self.loader)
        while True:
            with record_function(MARK_LOADER):
                batch = next(batches, None)
            if batch is None:
                return
            yield batch


def run_epochs(learner, cfg, train_loader, test_loader, lr_at, first_epoch, epochs, timings=None):
    """`epochs` epochs of train_one_epoch from epoch `first_epoch` (1-based), each followed by an
    evaluate pass of learner.net, as train.train() runs them; returns the next epoch. timings: a
    dict to which each phase's device seconds are added."""
    rt = learner.rt
    for epoch in range(first_epoch, first_epoch + epochs):
        timer = rt.timer().start()
        with record_function(MARK_TRAIN):
            train.train_one_epoch(learner, train_loader, lr_at, epoch, cfg)
        seconds = timer.stop()
        timer.start()
        with record_function(MARK_EVAL):
            train.evaluate(learner.net, test_loader, rt)
        if timings is not None:
            timings["train"] += seconds
            timings["eval"] += timer.stop()
    return first_epoch + epochs


def profile_recipe(rt, a):
    """-> (profiler, settings, unprofiled seconds {"train", "eval"}) after a warm-up epoch, then
    a.epochs epochs timed without the profiler, then a.epochs epochs profiled."""
    epochs = 1 + 2 * a.epochs
    # progress off: no bar in the profile; epochs: the warm-up, the timed and the profiled ones
    cfg = train.Config.from_keywords(dict(width=a.width, batch_size=a.batch_size, eval_batch_size=a.eval_batch_size,
                                          lr_min=0.04, lr_max=0.4, seed=0, device=str(rt.device),
                                          precision=rt.precision, epochs=epochs, progress=False))
    d = cifar.synthetic_cifar10(a.train_images, a.test_images, seed=0)
    train_loader = cifar.DeviceLoader(d.train_images, d.train_labels, cfg.batch_size, train=True, device=rt.device,
                                      seed=cfg.seed, pad_mode=cfg.pad_mode, cutout=cfg.cutout)
    test_loader = cifar.DeviceLoader(d.test_images, d.test_labels, cfg.eval_batch_size, train=False, device=rt.device)
    n = len(train_loader)
    learner = train.build(cfg, rt, n)
    learner.net = MarkedModel(learner.model)       # what runs forward: the model inside its record range
    total = epochs * n
    lr_at = lambda s: train.one_cycle_lr(s, total, round(total * 5 / 24) - 1, cfg.lr_min, cfg.lr_max)  # noqa: E731
    batches = MarkedLoader(train_loader)
    epoch = run_epochs(learner, cfg, batches, test_loader, lr_at, 1, 1)   # warm-up
    unprofiled = {"train": 0.0, "eval": 0.0}
    epoch = run_epochs(learner, cfg, batches, test_loader, lr_at, epoch, a.epochs, unprofiled)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if rt.device.type == "cuda" else [])
    rt.sync()
    with profile(activities=activities) as prof:
        run_epochs(learner, cfg, batches, test_loader, lr_at, epoch, a.epochs)
        rt.sync()
    settings = dict(epochs=a.epochs, width=a.width, batch_size=a.batch_size, train_images=a.train_images,
                    test_images=a.test_images, eval_batch_size=a.eval_batch_size, steps_per_epoch=n,
                    profiled_steps=a.epochs * n, evaluations=a.epochs, lr_min=cfg.lr_min, lr_max=cfg.lr_max)
    return prof, settings, unprofiled


# ----------------------------------------------------------------------------------------------
# Analysis: categories, host gaps, synchronisations, the top ops

def chain_masks(events):
    """{id(event): the rule mask of its chain (itself and every op around it)} for CPU events."""
    masks = {}

    def mask_of(e):
        key = id(e)
        if key not in masks:
            parent = e.cpu_parent
            masks[key] = rule_mask(e.name) | (mask_of(parent) if parent is not None else 0)
        return masks[key]
    for e in events:
        mask_of(e)
    return masks


def has_mark(e, mark):
    while e is not None:
        if e.name == mark:
            return True
        e = e.cpu_parent
    return False


def union_us(intervals):
    """Length of the union of (start, end) intervals."""
    covered, end = 0.0, None
    for s, e in sorted(intervals):
        if end is None or s > end:
            covered += e - s
            end = e
        elif e > end:
            covered += e - end
            end = e
    return covered


def is_device_event(e, cpu_names):
    # Kernels, memcpys and memsets; not the GPU-side copies of record ranges ("gpu_user_annotation").
    return (e.device_type != DeviceType.CPU and not getattr(e, "is_user_annotation", False)
            and e.name not in cpu_names)


def analyse(events, cuda):
    """The profile's numbers from its events (FunctionEvents, or any objects with the same
    attributes: name, device_type, is_async, time_range.start/end in us, cpu_parent, kernels
    (name, duration) and self_cpu_time_total).

    The basis is the device time on CUDA (kernel, memcpy and memset durations; a kernel takes the
    category of the op that launched it and of the ops around that), the ops' own CPU time on the
    CPU. Every unit of the basis is counted in exactly one category, so the categories add up to
    the total."""
    cpu = [e for e in events if e.device_type == DeviceType.CPU and not e.is_async]
    cpu_names = {e.name for e in cpu}
    masks = chain_masks(cpu)
    totals, inner = Counter({c: 0.0 for c in CATEGORIES}), Counter({c: 0.0 for c in CATEGORIES})
    device = [e for e in events if is_device_event(e, cpu_names)] if cuda else []
    for e in cpu:
        if cuda:
            amount = sum(k.duration for k in e.kernels if k.name not in cpu_names)
        else:
            amount = e.self_cpu_time_total
        if amount:
            c = category_of_mask(masks[id(e)])
            totals[c] += amount
            if c == "evaluation":
                inner[category_of_mask(masks[id(e)], inner=True)] += amount
    notes = []
    if cuda:              # device work no op launched (or the profiler could not link): "other"
        totals["other"] += max(0.0, sum(e.time_range.end - e.time_range.start for e in device) - sum(totals.values()))
        if not device:
            notes.append("the profiler recorded no CUDA kernels (CUPTI unavailable?): the device times are empty")
    phases = {}
    for name, mark in (("train", MARK_TRAIN), ("eval", MARK_EVAL)):
        spans = [(e.time_range.start, e.time_range.end) for e in cpu if e.name == mark]
        busy_events = device if cuda else [e for e in cpu if e.name.startswith("aten::")]
        inside = [(max(e.time_range.start, s), min(e.time_range.end, t)) for e in busy_events for s, t in spans
                  if e.time_range.start < t and e.time_range.end > s]
        wall, busy = sum(t - s for s, t in spans), union_us(inside)
        phases[name] = {"wall_seconds": wall / 1e6, "busy_seconds": busy / 1e6,
                        "host_gap_fraction": 1 - busy / wall if wall else None}
    # Host-device synchronisations in the training epochs: every .item() (and int()/bool() of a
    # tensor) is an aten::_local_scalar_dense, which waits for the device on CUDA.
    in_train = [e for e in cpu if has_mark(e, MARK_TRAIN)]
    syncs = Counter(e.name for e in in_train
                    if e.name in ("aten::_local_scalar_dense", "cudaStreamSynchronize", "cudaDeviceSynchronize",
                                  "cudaEventSynchronize", "cudaMemcpy"))
    train_spans = [(e.time_range.start, e.time_range.end) for e in cpu if e.name == MARK_TRAIN]
    syncs["Memcpy DtoH"] = sum(1 for e in device if "DtoH" in e.name
                               and any(s <= e.time_range.start < t for s, t in train_spans))
    return {"basis": "device time: kernel, memcpy and memset durations" if cuda else "CPU time: the ops' own (self) time",
            "seconds": {c: totals[c] / 1e6 for c in CATEGORIES},
            "total_seconds": sum(totals.values()) / 1e6,
            "inside_evaluation_seconds": {c: inner[c] / 1e6 for c in CATEGORIES if c != "evaluation"},
            "phases": phases, "sync_counts": dict(syncs), "notes": notes}


def device_us(e, which):
    """An event's "self" or "total" device time: *_device_time_total, *_cuda_time_total before torch 2.4."""
    name = "self_{}_time_total" if which == "self" else "{}_time_total"
    value = getattr(e, name.format("device"), None)
    return getattr(e, name.format("cuda"), 0) if value is None else value


def top_ops(prof, cuda, n=30):
    """key_averages rows, sorted by their own device time on CUDA, their own CPU time otherwise;
    and on CUDA the kernels by total time."""
    key = "self_device_time_total" if cuda else "self_cpu_time_total"
    averages = prof.key_averages()
    rows = [{"name": e.key, "calls": e.count, "self_cpu_us": e.self_cpu_time_total, "cpu_total_us": e.cpu_time_total,
             "self_device_us": device_us(e, "self") if cuda else 0,
             "device_total_us": device_us(e, "total") if cuda else 0}
            for e in averages]
    rows.sort(key=lambda r: -r["self_device_us" if cuda else "self_cpu_us"])
    kernels = []
    if cuda:
        events = prof.events()
        cpu_names = {e.name for e in events if e.device_type == DeviceType.CPU}
        sums, calls = Counter(), Counter()
        for e in events:
            if is_device_event(e, cpu_names):
                sums[e.name] += e.time_range.end - e.time_range.start
                calls[e.name] += 1
        kernels = [{"name": k, "calls": calls[k], "device_us": us, "category": category([k])}
                   for k, us in sums.most_common(n)]
    try:
        table = averages.table(sort_by=key, row_limit=n)
    except (AttributeError, KeyError):
        table = averages.table(sort_by=key.replace("device", "cuda"), row_limit=n)
    return rows[:n], kernels, table


# ----------------------------------------------------------------------------------------------
# Files

def summary(result):
    """The breakdown over the whole profile: the training categories and the evaluation passes."""
    b = result["breakdown"]
    total = b["total_seconds"]
    return [(c, s, s / total if total else 0.0) for c, s in b["seconds"].items()]


def write_markdown(result, path):
    r, b = result, result["breakdown"]
    s, train_phase, syncs = r["settings"], b["phases"]["train"], r["syncs"]
    lines = [f"# Profile of the recipe's loop: {r['device_name']}, {r['precision']}", "",
             f"Command: `{r['command']}`  ", f"Date {r['date']}, torch {r['torch']}, device {r['device']} "
             f"({r['device_name']}), precision {r['precision']}.  ",
             f"Width {s['width']}, batch {s['batch_size']}, {s['train_images']:,} synthetic training images "
             f"({s['steps_per_epoch']} steps per epoch), {s['epochs']} profiled epoch(s) = {s['profiled_steps']} steps, "
             f"each followed by an evaluation of {s['test_images']:,} images at batch {s['eval_batch_size']}; one warm-up "
             f"epoch and {s['epochs']} unprofiled epoch(s) before.", "",
             f"## Where the time goes ({b['basis']})", "",
             "| category | seconds | share | what it holds |", "|---|---:|---:|---|"]
    lines += [f"| {c} | {sec:.4f} | {100 * share:.1f} % | {CATEGORIES[c]} |" for c, sec, share in summary(r)]
    lines += [f"| **total** | **{b['total_seconds']:.4f}** | 100 % | |", "",
              *[f"Note: {note}." for note in b["notes"]],
              "Inside the evaluation passes: "
              + ", ".join(f"{c} {sec:.4f} s" for c, sec in b["inside_evaluation_seconds"].items() if sec) + ".", "",
              "## Host gaps", ""]
    for name, label in (("train", "training epochs"), ("eval", "evaluation passes")):
        p = b["phases"][name]
        gap = "n/a" if p["host_gap_fraction"] is None else f"{100 * p['host_gap_fraction']:.1f} %"
        busy = "device busy (union of kernel intervals)" if r["cuda"] else "inside aten ops (union)"
        lines.append(f"- {label}: wall {p['wall_seconds']:.3f} s under the profiler, {busy} {p['busy_seconds']:.3f} s: "
                     f"**host gap {gap}** of the wall.")
    u = r["unprofiled"]
    lines += [f"- without the profiler the same number of epochs took {u['train_seconds']:.3f} s of training "
              f"({1e3 * u['seconds_per_step']:.2f} ms per step) and {u['eval_seconds']:.3f} s of evaluation: the "
              f"profiler's own cost on the host is the difference from the wall above "
              f"({train_phase['wall_seconds']:.3f} s).", "",
              "## Host-device synchronisations per training step", "",
              f"- `.item()` and other reads of a tensor's value (aten::_local_scalar_dense): "
              f"**{syncs['item_reads_per_step']:.2f}** per step",
              "- " + ("CUDA synchronisation calls and device-to-host copies per step: "
                      + (", ".join(f"{k} {v:.2f}" for k, v in syncs["cuda_per_step"].items()) or "none")
                      if r["cuda"] else "CUDA synchronisation calls: not applicable on the CPU"), ""]
    if r["top_kernels"]:
        lines += ["## Top kernels by device time", "", "| kernel | calls | ms | category |", "|---|---:|---:|---|"]
        lines += [f"| `{k['name'][:100]}` | {k['calls']} | {k['device_us'] / 1e3:.3f} | {k['category']} |"
                  for k in r["top_kernels"][:20]]
        lines.append("")
    lines += [f"## Top ops (key_averages, by {'self device' if r['cuda'] else 'self CPU'} time)", "", "```",
              r["table"].rstrip(), "```", ""]
    with open(path, "w") as f:
        f.write("\n".join(lines))


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    p = argparse.ArgumentParser(prog="python -m experiments.profile_gpu", description=__doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=int, default=2, help="profiled epochs (each followed by an evaluation)")
    p.add_argument("--width", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=512)
    p.add_argument("--train-images", type=int, default=50_000)
    p.add_argument("--test-images", type=int, default=10_000)
    p.add_argument("--eval-batch-size", type=int, default=1000)
    p.add_argument("--precision", default="auto", help="auto | fp32 | bf16 | fp16 (fp16: CUDA only)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--out", default="experiments/measurements", help="folder for profile_<gpu>_<precision>.json and .md")
    p.add_argument("--trace", action="store_true", help="also write the Chrome trace (tens of MB on a GPU)")
    a = p.parse_args(argv)
    try:
        rt = utils.pick_runtime(a.device, a.precision)
    except utils.UsageError as e:
        p.error(str(e))
    if rt.device.type != "cuda" and rt.precision == "fp16":
        p.error("--precision fp16 (autocast with a grad scaler, the T4's path) is profiled on CUDA only; "
                "on this device use --precision fp32 or bf16")
    if rt.device.type == "mps":
        p.error("the profile records CPU and CUDA activity; on MPS it would time only the host: use cpu or cuda")
    if min(a.epochs, a.width, a.test_images, a.eval_batch_size) < 1:
        p.error("--epochs, --width, --test-images and --eval-batch-size must be at least 1")
    cuda = rt.device.type == "cuda"
    started = time.perf_counter()
    try:
        prof, settings, unprofiled = profile_recipe(rt, a)
    except utils.UsageError as e:
        p.error(str(e))
    profiled_at = time.perf_counter()
    breakdown = analyse(prof.events(), cuda)
    steps = settings["profiled_steps"]
    counts = breakdown.pop("sync_counts")
    rows, kernels, table = top_ops(prof, cuda)
    name = rt.describe().get("gpu") or utils.cpu_name()
    result = {
        "command": "python -m experiments.profile_gpu " + shlex.join(argv), "date": time.strftime("%Y-%m-%d"),
        "torch": torch.__version__, "device": str(rt.device), "device_name": name, "precision": rt.precision,
        "cuda": cuda, "runtime": rt.describe(), "settings": settings, "breakdown": breakdown,
        "unprofiled": {"train_seconds": unprofiled["train"], "eval_seconds": unprofiled["eval"],
                       "seconds_per_step": unprofiled["train"] / steps},
        "syncs": {"item_reads_per_step": counts.get("aten::_local_scalar_dense", 0) / steps,
                  "cuda_per_step": {k: v / steps for k, v in counts.items() if k != "aten::_local_scalar_dense" and v}
                  if cuda else None,
                  "counts": counts},
        "top_ops": rows, "top_kernels": kernels, "table": table,
        "seconds": {"run": profiled_at - started, "analysis": time.perf_counter() - profiled_at}}
    os.makedirs(a.out, exist_ok=True)
    stem = os.path.join(a.out, f"profile_{bench.device_slug(rt)}_{rt.precision}")
    result["files"] = {"json": stem + ".json", "markdown": stem + ".md"}
    if a.trace:
        prof.export_chrome_trace(stem + ".trace.json")
        result["files"]["trace"] = stem + ".trace.json"
    with open(stem + ".json", "w") as f:
        json.dump(result, f, indent=2)
    write_markdown(result, stem + ".md")
    b = breakdown
    print(f"{name}, {rt.precision}: {steps} profiled steps, {b['basis']}, total {b['total_seconds']:.3f} s")
    for c, sec, share in summary(result):
        print(f"  {c:13s} {sec:9.4f} s  {100 * share:5.1f} %")
    gap = b["phases"]["train"]["host_gap_fraction"]
    for note in b["notes"]:
        print("note:", note)
    print(f"host gap in training: {'n/a' if gap is None else f'{100 * gap:.1f} %'}; "
          f".item() per step {result['syncs']['item_reads_per_step']:.2f}; "
          f"files {stem}.json and .md ({result['seconds']['run']:.1f} s run, {result['seconds']['analysis']:.1f} s analysis)")
    return result


if __name__ == "__main__":
    main()
