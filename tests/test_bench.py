"""bench.py measures what it says: its FLOP counts are the specification's, its ratios are of the
numbers it timed, and every part runs (at toy sizes here; the speeds themselves are measured by
`python bench.py`, never by a test)."""
import os

import pytest
import torch

import bench
import data
import utils
from devices import CUDA

CPU = utils.pick_runtime("cpu", "fp32")
DEVICES = ["cpu", CUDA]


def test_flop_counts_are_the_specifications_and_scale_with_width_squared():
    train_gflop, eval_gflop = bench.gflop_per_image(64)
    # SPEC section 5: 2.27 GFLOP per training image, 0.76 per evaluated image (forward only);
    # a backward pass costs two forwards.
    assert train_gflop == pytest.approx(2.27, abs=0.005) and eval_gflop == pytest.approx(0.76, abs=0.005)
    assert train_gflop == pytest.approx(3 * eval_gflop, rel=0.01)
    half = bench.gflop_per_image(32)
    assert half[0] == pytest.approx(train_gflop / 4, rel=0.02)     # convolutions: width x width


def test_datasheet_peaks_match_the_most_specific_name():
    assert bench.datasheet_tflops("NVIDIA H100 80GB HBM3") == 989
    assert bench.datasheet_tflops("NVIDIA H100 PCIe") == 756
    assert bench.datasheet_tflops("NVIDIA A100-SXM4-40GB") == 312
    assert bench.datasheet_tflops("NVIDIA A10") == 125
    assert bench.datasheet_tflops("Tesla T4") == 65
    assert bench.datasheet_tflops("NVIDIA L4") == 121
    assert bench.datasheet_tflops("NVIDIA L40S") == 362 and bench.datasheet_tflops("NVIDIA L40") == 181
    assert bench.datasheet_tflops("NVIDIA H100 NVL") == 835
    assert bench.datasheet_tflops("Some Future GPU") is None


class FakeClock(utils.Runtime):
    """The CPU runtime, whose timer's k-th stop() returns seconds[k]: timings with values the test
    chose, so every number a bench function derives from them is known here in advance."""

    def __init__(self, seconds):
        super().__init__(torch.device("cpu"), "fp32")
        self.seconds = list(seconds)

    def timer(self):
        clock = self

        class Timer:
            def start(self):
                return self

            def stop(self):
                return clock.seconds.pop(0)
        return Timer()


def test_augmentation_takes_the_best_of_three_timed_passes_and_compares_them(monkeypatch):
    d = data.synthetic_cifar10(128, 8)
    passes = iter([9.0, 0.5, 0.4, 0.45,        # DeviceLoader: a warm-up, then three timed passes
                   1.8])                       # torchvision, 0 workers
    timed = []

    def fake_seconds(batches, rt):
        timed.append(len(list(batches)))           # every batch of the pass is produced
        return next(passes)
    monkeypatch.setattr(bench, "seconds_per_epoch", fake_seconds)
    rows = []
    seconds = bench.bench_augmentation(d.train_images, d.train_labels, CPU, 64, rows, workers=(0,))
    assert seconds == {"DeviceLoader": 0.4, "torchvision v2, 0 workers": 1.8}
    assert timed == [2] * 5                        # 128 images in batches of 64, each pass whole
    assert rows == [("augment: DeviceLoader epoch", "0.400 s", "128 images on cpu"),
                    ("augment: torchvision v2, 0 workers", "1.800 s", "DeviceLoader is 4.5x faster")]


def test_seconds_per_epoch_and_time_steps_time_what_they_run():
    calls = []
    clock = FakeClock([6.0, 2.5])
    assert bench.seconds_per_epoch(iter([(1, 2)] * 3), clock) == 6.0
    assert bench.time_steps(lambda: calls.append(len(clock.seconds)), 2, 5, clock) == 2.5 / 5
    assert calls == [1] * 7                         # 2 warm-up steps, then 5 timed ones


def test_the_conventional_pipeline_makes_batches_of_the_same_kind():
    d = data.synthetic_cifar10(64, 8)
    conventional = bench.PerSampleDataset(d.train_images, d.train_labels)
    x, y = next(iter(torch.utils.data.DataLoader(conventional, batch_size=16)))
    ours, _ = next(iter(data.DeviceLoader(d.train_images, d.train_labels, 16, train=True, device="cpu")))
    assert x.shape == ours.shape == (16, 3, 32, 32) and x.dtype == ours.dtype == torch.float32
    assert torch.equal(y, d.train_labels[:16])
    # Normalised: black (0) maps to -mean/std, white (255) to (1 - mean)/std.
    mean, std = torch.tensor(data.CIFAR10_MEAN), torch.tensor(data.CIFAR10_STD)
    assert (x.amin((0, 2, 3)) >= -mean / std - 1e-5).all() and (x.amax((0, 2, 3)) <= (1 - mean) / std + 1e-5).all()


def test_throughput_divides_the_batch_by_the_seconds_per_step(monkeypatch):
    ran = []

    def fake_time_steps(step, warmup, steps, rt):
        step()                                      # the step runs (once) ...
        ran.append(rt.precision)
        return [0.25, 0.05][len(ran) - 1]           # ... and "takes" 0.25 s naive, 0.05 s ours
    monkeypatch.setattr(bench, "time_steps", fake_time_steps)
    rows = []
    assert bench.bench_throughput(CPU, 4, 1, 1, rows) == (0.25, 0.05)
    assert ran == ["fp32", "fp32"]
    assert rows == [("train step: naive fp32 NCHW", "16 img/s", "0.250 s/step"),
                    ("train step: ours (fp32, channels_last)", "80 img/s", "0.050 s/step, 5.00x the naive loop")]


def test_loop_overhead_compares_the_fastest_epoch_with_the_fastest_bare_steps():
    # In turn: bare, epoch, bare, epoch. The fastest of each: 2.0 s bare, 2.1 s epoch: +5.0 %.
    clock = FakeClock([2.4, 2.1, 2.0, 2.6])
    rows = []
    assert bench.bench_loop_overhead(clock, 8, 4, rows, repeats=2) == (2.1, 2.0)
    assert clock.seconds == []
    assert rows == [("loop: train.py epoch vs bare steps", "+5.0 %",
                     "2.10 s vs 2.00 s, 2 steps, best of 2 (goal <= 5%)")]


def test_recipe_arithmetic_on_a_known_run(monkeypatch):
    """bench_recipe's FLOP rate and floor for a run of 24 epochs of 97 steps of 512 images that
    trained for 12 s, on an H100 SXM in bf16: checked against the numbers worked out here."""
    asked = {}

    def fake_main(**settings):
        asked.update(settings)
        return {"config": {"epochs": 24, "batch_size": 512, "width": 64}, "steps_per_epoch": 97,
                "timings": {"train_seconds": 12.0, "eval_seconds": 1.5, "images_per_second": 99_328.0,
                            "compile_seconds": 0.0}}
    monkeypatch.setattr(bench.train, "main", fake_main)
    h100 = utils.Runtime(torch.device("cpu"), "bf16")
    monkeypatch.setattr(h100, "describe", lambda: {"gpu": "NVIDIA H100 80GB HBM3"})
    rows = []
    r = bench.bench_recipe(h100, False, rows, out_dir="/nowhere")
    train_tflop = 24 * 97 * 512 * bench.gflop_per_image(64)[0] / 1000     # 1,191,936 images: 2.7 PFLOP
    assert train_tflop == pytest.approx(2706, abs=3)
    assert r["achieved_tflops"] == pytest.approx(train_tflop / 12.0, rel=1e-12)
    assert r["floor_seconds"] == pytest.approx(train_tflop / 989, rel=1e-12)
    assert (asked["lr_min"], asked["lr_max"], asked["synthetic_train"], asked["compile"]) == (0.04, 0.4, 50_000, False)
    assert asked["precision"] == "bf16" and asked["out_dir"] == os.path.join("/nowhere", "bench_recipe_eager")
    assert rows[0][:2] == ("recipe 24 epochs, eager, bf16", "12.0 s train")
    assert rows[0][2].startswith(f"99,328 img/s, {train_tflop / 12:.1f} TFLOP/s, floor {train_tflop / 989:.1f} s at "
                                 "the 989 TFLOP/s datasheet peak")
    h100.precision = "fp32"                        # the datasheet peaks are bf16: no floor for fp32
    assert bench.bench_recipe(h100, True, [], out_dir="/nowhere")["floor_seconds"] is None


@pytest.mark.parametrize("device", DEVICES)
def test_recipe_row_is_the_runs_own_training_time_and_flop(device, tmp_path):
    rt = utils.pick_runtime(device, "auto")
    rows = []
    r = bench.bench_recipe(rt, False, rows, n_train=256, n_test=128, out_dir=str(tmp_path), epochs=2,
                           width=8, batch_size=64)
    assert (tmp_path / "bench_recipe_eager" / "metrics.json").exists()
    assert r["status"] == "complete" and r["steps_per_epoch"] == 4
    train_gflop = bench.gflop_per_image(8)[0]
    expected = 2 * 4 * 64 * train_gflop / 1000 / r["timings"]["train_seconds"]
    assert r["achieved_tflops"] == pytest.approx(expected, rel=1e-9)
    assert rows[0][0] == f"recipe 2 epochs, eager, {rt.precision}"
    peak = bench.datasheet_tflops(rt.describe().get("gpu", ""))
    assert (r["floor_seconds"] is None) == (peak is None or rt.precision == "fp32")
