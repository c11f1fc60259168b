"""bench.py measures what it says: its FLOP counts are the specification's, its ratios are of the
numbers it timed, and every part runs (at toy sizes here; the speeds themselves are measured by
`python bench.py`, never by a test)."""
import re

import pytest
import torch

import bench
import data
import utils
from devices import CUDA

CPU = utils.pick_runtime("cpu", "fp32")
DEVICES = ["cpu", CUDA]


def number(text):
    return float(re.search(r"[-+]?[\d,]*\.?\d+", text).group().replace(",", ""))


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


def test_augmentation_rows_compare_the_seconds_they_measured():
    d = data.synthetic_cifar10(256, 8)
    rows = []
    seconds = bench.bench_augmentation(d.train_images, d.train_labels, CPU, 64, rows, workers=(0,))
    assert set(seconds) == {"DeviceLoader", "torchvision v2, 0 workers"}
    assert all(s > 0 for s in seconds.values())
    ratio = seconds["torchvision v2, 0 workers"] / seconds["DeviceLoader"]
    assert [r[0] for r in rows] == ["augment: DeviceLoader epoch", "augment: torchvision v2, 0 workers"]
    assert number(rows[1][2]) == pytest.approx(ratio, abs=0.05)


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


def test_throughput_and_loop_rows_report_their_own_timings():
    rows = []
    naive_s, ours_s = bench.bench_throughput(CPU, 4, 1, 1, rows)
    assert naive_s > 0 and ours_s > 0
    assert number(rows[0][1]) == pytest.approx(4 / naive_s, rel=0.01, abs=1)
    assert number(rows[1][2].split(",")[1]) == pytest.approx(naive_s / ours_s, abs=0.01)
    full, bare = bench.bench_loop_overhead(CPU, 8, 4, rows, repeats=1)
    assert full > 0 and bare > 0
    assert number(rows[2][1]) == pytest.approx(100 * (full / bare - 1), abs=0.06)


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
    assert number(rows[0][1]) == pytest.approx(r["timings"]["train_seconds"], abs=0.05)
    peak = bench.datasheet_tflops(rt.describe().get("gpu", ""))
    assert (r["floor_seconds"] is None) == (peak is None or rt.precision == "fp32")
