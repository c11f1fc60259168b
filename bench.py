"""Speed of this repository's training path, measured side by side with the conventional one.

    python bench.py --quick      # about 2 minutes on this project's 2-core CPU
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
Nothing here is a test: tests/ checks correctness, this file measures speed.
"""
import argparse
import json
import os
import platform
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


def make_step(model, x, y, rt, opt=None, scaler=None):
    """train.py's training step on a fixed batch, at rt's precision (fp32: no autocast)."""
    opt = opt or torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True, weight_decay=5e-4)
    scaler, loss_fn = scaler or rt.grad_scaler(), torch.nn.CrossEntropyLoss()

    def step(x=x, y=y):
        train.train_step(model, x, y, opt, scaler, rt.autocast, loss_fn)
    return step


def bench_throughput(rt, batch_size, warmup, steps, rows):
    """Seconds per step: (naive fp32 NCHW, ours)."""
    torch.manual_seed(0)
    x = torch.randn(batch_size, 3, 32, 32, device=rt.device)
    y = torch.randint(0, 10, (batch_size,), device=rt.device)
    naive = CustomResNet().to(rt.device)                                 # fp32, NCHW
    naive_s = time_steps(make_step(naive, x, y, utils.Runtime(rt.device, "fp32")), warmup, steps, rt)
    ours_model = CustomResNet().to(rt.device, memory_format=torch.channels_last)
    x_cl = x.contiguous(memory_format=torch.channels_last)
    ours_s = time_steps(make_step(ours_model, x_cl, y, rt), warmup, steps, rt)
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
    model = CustomResNet().to(rt.device, memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True, weight_decay=5e-4)
    scaler = rt.grad_scaler()
    loss_fn = torch.nn.CrossEntropyLoss()
    batches = list(loader)                       # pre-made batches: the bare steps read nothing
    step = make_step(model, *batches[0], rt, opt=opt, scaler=scaler)
    step()                                       # warm-up (allocations, momentum buffers)
    bare, full = [], []
    for _ in range(repeats):
        t = rt.timer().start()
        for x, y in batches:                     # the same model, optimizer and scaler as the epoch,
            step(x, y)                           # queued back to back as the epoch queues them
        bare.append(t.stop())
        t = rt.timer().start()
        train.train_one_epoch(model, loader, opt, scaler, rt, loss_fn, lambda s: 0.01, 0, progress=True,
                              desc="loop overhead epoch")
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

def format_table(rows):
    """Rows of (row, result, detail) strings as aligned columns under a header."""
    rows = [("row", "result", "detail"), *rows]
    width = [max(len(r[i]) for r in rows) for i in range(3)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, width)).rstrip() for r in rows)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="smaller sizes: about 2 minutes on a 2-core CPU")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | mps")
    p.add_argument("--precision", default="auto", help="auto | fp32 | bf16 | fp16")
    p.add_argument("--batch-size", type=int, default=512)
    p.add_argument("--json", default="", help="also write the rows to this JSON file")
    a = p.parse_args(argv)
    started = time.perf_counter()
    rt = utils.pick_runtime(a.device, a.precision)
    gpu = rt.device.type == "cuda"
    n_aug = 50_000                                   # one CIFAR-10 training epoch, in every mode
    rows = []
    print(f"bench.py on {rt.device} ({rt.describe().get('gpu', platform.processor() or platform.machine())}), "
          f"{torch.get_num_threads()} CPU threads, torch {torch.__version__}, precision {rt.precision}",
          flush=True)
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
    rss_bytes = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1 if sys.platform == "darwin" else 1024)
    rows.append(("peak CPU RSS", f"{rss_bytes / 2**30:.2f} GiB", ""))      # ru_maxrss: KiB, bytes on macOS
    print("\n" + format_table(rows))
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"argv": sys.argv, "date": time.strftime("%Y-%m-%d"), "runtime": rt.describe(),
                       "seconds": round(time.perf_counter() - started, 1), "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
