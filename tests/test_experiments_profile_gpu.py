"""experiments/profile_gpu.py: its whole run at tiny size on the CPU (the GPU session's dry run),
its categories on known op and kernel names, and its CUDA arithmetic on events made here."""
import json
import os
from types import SimpleNamespace

import pytest
from torch.autograd import DeviceType

import experiments.profile_gpu as profile_gpu


pytestmark = pytest.mark.usefixtures("one_cpu_thread")     # conftest.py


TINY = ["--device", "cpu", "--precision", "fp32", "--train-images", "512", "--test-images", "256",
        "--eval-batch-size", "128", "--batch-size", "64", "--width", "8", "--epochs", "1"]


def test_a_tiny_profile_on_the_cpu_writes_its_files_and_adds_up(tmp_path):
    r = profile_gpu.main(TINY + ["--out", str(tmp_path)])
    assert r["files"] == {"json": str(tmp_path / "profile_cpu_fp32.json"), "markdown": str(tmp_path / "profile_cpu_fp32.md")}
    on_disk = json.loads((tmp_path / "profile_cpu_fp32.json").read_text())
    assert on_disk["command"] == "python -m experiments.profile_gpu " + " ".join(TINY + ["--out", str(tmp_path)])
    assert on_disk["device"] == "cpu" and on_disk["precision"] == "fp32" and on_disk["torch"] and on_disk["date"]
    s = on_disk["settings"]
    assert (s["steps_per_epoch"], s["profiled_steps"], s["evaluations"], s["width"]) == (8, 8, 1, 8)
    b = on_disk["breakdown"]
    assert list(b["seconds"]) == list(profile_gpu.CATEGORIES)
    assert sum(b["seconds"].values()) == pytest.approx(b["total_seconds"], rel=1e-9)
    assert all(v >= 0 for v in b["seconds"].values())
    for part in ("convolutions", "batchnorm", "maxpool", "optimizer", "augmentation", "loss", "evaluation"):
        assert b["seconds"][part] > 0, part
    assert sum(b["inside_evaluation_seconds"].values()) == pytest.approx(b["seconds"]["evaluation"], rel=1e-9)
    train = b["phases"]["train"]
    assert 0 < train["busy_seconds"] <= train["wall_seconds"] and 0 < train["host_gap_fraction"] < 1
    # The loop reads three sums at its first step and at its 8th and last (log_every 10), and two
    # more at its end.
    assert on_disk["syncs"]["item_reads_per_step"] == 8 / 8 and on_disk["syncs"]["cuda_per_step"] is None
    # One epoch of 8 steps and one evaluation in 2 batches: 8 convolutions per forward pass.
    calls = {row["name"]: row["calls"] for row in on_disk["top_ops"]}
    assert calls["aten::convolution"] == 8 * (8 + 2) and calls["Optimizer.step#SGD.step"] == 8
    self_cpu = [row["self_cpu_us"] for row in on_disk["top_ops"]]
    assert self_cpu == sorted(self_cpu, reverse=True) and on_disk["top_kernels"] == []
    md = (tmp_path / "profile_cpu_fp32.md").read_text()
    assert on_disk["command"] in md and "| **total** |" in md and "host gap" in md
    for c, seconds in b["seconds"].items():
        assert f"| {c} | {seconds:.4f} |" in md


def test_fp16_is_refused_on_the_cpu_with_a_clear_message(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        profile_gpu.main(["--device", "cpu", "--precision", "fp16", "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "--precision fp16" in err and "CUDA only" in err
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("chain, expected", [
    (["profile: model", "aten::conv2d", "aten::convolution", "aten::cudnn_convolution",
      "sm90_xmma_fprop_implicit_gemm_bf16bf16_bf16f32_f32_nhwckrsc_nhwc"], "convolutions"),
    (["profile: model", "aten::conv2d", "aten::_to_copy", "aten::copy_", "void at::native::elementwise_kernel"],
     "convolutions"),                                              # autocast's cast of the weights
    (["autograd::engine::evaluate_function: ConvolutionBackward0", "ConvolutionBackward0",
      "aten::convolution_backward", "sm80_xmma_wgrad_implicit_gemm"], "convolutions"),
    (["profile: model", "aten::linear", "aten::mm", "ampere_bf16_s16816gemm"], "convolutions"),
    (["autograd::engine::evaluate_function: CudnnBatchNormBackward0", "CudnnBatchNormBackward0",
      "aten::cudnn_batch_norm_backward", "void cudnn::bn_bw_1C11_kernel_new"], "batchnorm"),   # cuDNN, not a conv
    (["profile: model", "aten::batch_norm", "aten::native_batch_norm",
      "void at::native::batch_norm_collect_statistics_channels_last_kernel"], "batchnorm"),
    (["profile: model", "aten::relu_", "aten::clamp_min_", "void at::native::vectorized_elementwise_kernel"],
     "elementwise"),
    (["profile: model", "aten::add", "void at::native::vectorized_elementwise_kernel"], "elementwise"),
    (["autograd::engine::evaluate_function: ThresholdBackward0", "aten::threshold_backward"], "elementwise"),
    (["profile: model", "aten::max_pool2d", "aten::max_pool2d_with_indices"], "maxpool"),
    (["autograd::engine::evaluate_function: ToCopyBackward0", "aten::_to_copy", "aten::copy_"], "casts"),
    (["Optimizer.step#SGD.step", "aten::_foreach_add_", "void at::native::multi_tensor_apply_kernel"], "optimizer"),
    (["aten::_fused_sgd_"], "optimizer"),
    (["aten::_amp_foreach_non_finite_check_and_unscale_"], "optimizer"),
    (["profile: DeviceLoader", "aten::index_select", "void at::native::indexSelectLargeIndex"], "augmentation"),
    (["profile: DeviceLoader", "aten::mul_"], "augmentation"),     # normalisation: only the range tells
    (["aten::index_fill_"], "augmentation"),
    (["aten::cross_entropy_loss", "aten::log_softmax", "aten::_log_softmax"], "loss"),
    (["autograd::engine::evaluate_function: NllLossBackward0", "aten::nll_loss_backward"], "loss"),
    (["profile: evaluate", "profile: model", "aten::conv2d"], "evaluation"),
    (["aten::add_"], "other"),                                     # the loop's loss sum, outside the model
    (["aten::argmax"], "other"),
    (["autograd::engine::evaluate_function: torch::autograd::AccumulateGrad", "aten::add_"], "other"),
    (["Memcpy DtoH (Device -> Pageable)"], "other"),
])
def test_categories_of_known_names(chain, expected):
    assert profile_gpu.category(chain) == expected


def test_inside_an_evaluation_pass_the_network_parts_are_told_apart():
    assert profile_gpu.category(["profile: evaluate", "profile: model", "aten::conv2d"], inner=True) == "convolutions"
    assert profile_gpu.category(["profile: evaluate", "aten::cross_entropy"], inner=True) == "loss"


def fake_cuda_profile():
    """Events as a CUDA profile holds them: CPU ops (nested, with the kernels they launched) and
    the device's kernels and copies, times in microseconds."""
    events = []

    def op(name, start, end, parent=None, kernels=()):
        e = SimpleNamespace(name=name, device_type=DeviceType.CPU, is_async=False, cpu_parent=parent,
                            time_range=SimpleNamespace(start=start, end=end), self_cpu_time_total=0,
                            kernels=[SimpleNamespace(name=k, duration=d) for k, d in kernels])
        events.append(e)
        return e

    def device(name, start, end, **annotation):
        events.append(SimpleNamespace(name=name, device_type=DeviceType.CUDA, is_async=False, cpu_parent=None,
                                      time_range=SimpleNamespace(start=start, end=end), self_cpu_time_total=0,
                                      kernels=[], **annotation))
    epoch = op("profile: train epoch", 0, 100)
    op("aten::index_select", 2, 4, op("profile: DeviceLoader", 1, 5, epoch), [("indexSelectLargeIndex", 3)])
    model = op("profile: model", 6, 30, epoch)
    op("aten::cudnn_convolution", 8, 19, op("aten::conv2d", 7, 20, model), [("sm90_xmma_fprop_implicit_gemm", 10)])
    op("aten::cudnn_batch_norm", 22, 24, op("aten::batch_norm", 21, 25, model), [("cudnn::bn_fw_tr_1C11_kernel", 4)])
    op("aten::_foreach_add_", 41, 42, op("Optimizer.step#SGD.step", 40, 50, epoch), [("multi_tensor_apply_kernel", 6)])
    op("cudaStreamSynchronize", 60.5, 60.9, op("aten::_local_scalar_dense", 60, 61, op("aten::item", 59, 62, epoch)))
    evaluate = op("profile: evaluate", 110, 150)
    op("aten::conv2d", 112, 114, op("profile: model", 111, 130, evaluate), [("sm90_xmma_fprop_implicit_gemm", 8)])
    device("indexSelectLargeIndex", 3, 6)
    device("sm90_xmma_fprop_implicit_gemm", 10, 20)
    # Record ranges copied onto the GPU's timeline are not work: flagged as such, or (in a torch
    # without the flag) named as a CPU range.
    device("gpu_user_annotation", 0, 100, is_user_annotation=True)
    device("Optimizer.step#SGD.step", 40, 50)
    device("cudnn::bn_fw_tr_1C11_kernel", 22, 26)
    device("multi_tensor_apply_kernel", 45, 51)
    device("Memcpy DtoH (Device -> Pageable)", 60, 60.2)        # linked to no op here: "other"
    device("sm90_xmma_fprop_implicit_gemm", 115, 123)
    return events


def test_the_cuda_arithmetic_on_a_profile_made_here():
    b = profile_gpu.analyse(fake_cuda_profile(), cuda=True)
    us = {c: round(s * 1e6, 6) for c, s in b["seconds"].items()}
    assert us == {"convolutions": 10, "batchnorm": 4, "elementwise": 0, "maxpool": 0, "casts": 0, "optimizer": 6,
                  "augmentation": 3, "loss": 0, "evaluation": 8, "other": 0.2}
    assert b["total_seconds"] * 1e6 == pytest.approx(31.2)
    assert b["inside_evaluation_seconds"]["convolutions"] * 1e6 == pytest.approx(8)
    # Training: 100 us of wall, the device busy 3 + 10 + 4 + 6 + 0.2 us of it (the annotations
    # are not counted); evaluation: 40 us of wall, 8 busy.
    assert b["phases"]["train"]["busy_seconds"] * 1e6 == pytest.approx(23.2)
    assert b["phases"]["train"]["host_gap_fraction"] == pytest.approx(1 - 23.2 / 100)
    assert b["phases"]["eval"]["host_gap_fraction"] == pytest.approx(1 - 8 / 40)
    assert b["sync_counts"] == {"aten::_local_scalar_dense": 1, "cudaStreamSynchronize": 1, "Memcpy DtoH": 1}


def test_union_of_intervals():
    assert profile_gpu.union_us([(0, 2), (1, 3), (5, 6), (5.5, 5.8)]) == 4
    assert profile_gpu.union_us([]) == 0
