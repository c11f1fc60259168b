"""On an accelerator (CUDA, MPS), the same results as on the CPU.

Every other test runs on the CPU. These run once per accelerator PyTorch sees and are skipped
where there is none, so on a GPU machine `python -m pytest tests/test_accelerators.py` is the
first thing to run, before any timing in bench.py: it checks that the device-side paths (data
augmentation, autocast and the grad scaler, the LR range test's restore, Grad-CAM, a whole run
and its files) do on the device what the CPU tests prove they do on the CPU.
"""
import contextlib
import shutil
import time

import pytest
import torch
import torch.nn.functional as F

import data
import train
import utils
from custom_resnet import CustomResNet
from devices import ACCELERATORS
from gradcam import GradCAM
from lr_finder import lr_range_test


@contextlib.contextmanager
def full_fp32():
    """fp32 without TF32 on CUDA (PyTorch lets cuDNN convolutions use TF32 by default), so a
    device result can be compared with the CPU's at fp32 tolerances."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


# ----------------------------------------------------------------------------------------------
# Data

@pytest.mark.parametrize("device", ACCELERATORS)
def test_training_batches_equal_the_cpus(device):
    d = data.synthetic_cifar10(512, 8)
    on_device = data.DeviceLoader(d.train_images, d.train_labels, 128, train=True, device=device, seed=3)
    on_cpu = data.DeviceLoader(d.train_images, d.train_labels, 128, train=True, device="cpu", seed=3)
    assert len(on_device) == len(on_cpu) == 4
    for epoch in range(2):                     # the draws are the same on every device
        for (x, y), (x_cpu, y_cpu) in zip(on_device, on_cpu):
            assert x.device.type == device and x.is_contiguous(memory_format=torch.channels_last)
            assert torch.equal(y.cpu(), y_cpu)
            torch.testing.assert_close(x.cpu(), x_cpu, atol=1e-5, rtol=0)


@pytest.mark.parametrize("device", ACCELERATORS)
def test_evaluation_batches_equal_the_cpus(device):
    d = data.synthetic_cifar10(8, 300)
    on_device = data.DeviceLoader(d.test_images, d.test_labels, 128, train=False, device=device)
    on_cpu = data.DeviceLoader(d.test_images, d.test_labels, 128, train=False, device="cpu")
    assert len(on_device) == len(on_cpu) == 3
    for (x, y), (x_cpu, y_cpu) in zip(on_device, on_cpu):
        torch.testing.assert_close(x.cpu(), x_cpu, atol=1e-5, rtol=0)
        assert torch.equal(y.cpu(), y_cpu)


# ----------------------------------------------------------------------------------------------
# Training numerics

def _precisions(device):
    # The device's automatic choice, and on CUDA also fp16 + GradScaler: the path of a T4.
    return ["auto", "fp16"] if device == "cuda" else ["auto"]


@pytest.mark.parametrize("device", ACCELERATORS)
def test_train_step_learns_a_fixed_batch_at_the_devices_precisions(device):
    for precision in _precisions(device):
        rt = utils.pick_runtime(device, precision)
        torch.manual_seed(0)
        model = CustomResNet(width=16).to(rt.device, memory_format=torch.channels_last)
        opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True)
        scaler = rt.grad_scaler()
        learner = train.Learner(model, model, opt, scaler, torch.nn.CrossEntropyLoss(), rt)
        x = torch.randn(64, 3, 32, 32).to(rt.device, memory_format=torch.channels_last)
        y = torch.randint(0, 10, (64,)).to(rt.device)
        losses = [train.train_step(learner, x, y)[1].item() for _ in range(30)]
        assert all(torch.isfinite(torch.tensor(losses))), (precision, losses)
        assert losses[-1] < 0.5 * losses[0], (rt.precision, losses)   # it memorises the batch
        if rt.precision == "fp16":
            assert scaler.is_enabled() and scaler.get_scale() > 0


@pytest.mark.parametrize("device", ACCELERATORS)
def test_evaluation_forward_equals_the_cpus_at_fp32(device):
    torch.manual_seed(0)
    model = CustomResNet(width=16).eval()
    x = torch.randn(16, 3, 32, 32)
    with torch.inference_mode(), full_fp32():
        expected = model(x)
        got = model.to(device, memory_format=torch.channels_last)(
            x.to(device, memory_format=torch.channels_last))
    # A layout or precision bug errs by about the logits' own size; fp32 kernels (direct,
    # Winograd or FFT convolutions, whichever cuDNN picks) stay far within 1e-3 of it.
    torch.testing.assert_close(got.cpu(), expected, atol=1e-3 * expected.abs().max().item(), rtol=0)


@pytest.mark.parametrize("device", ACCELERATORS)
def test_lr_range_test_restores_device_state_bit_for_bit(device):
    rt = utils.pick_runtime(device, "auto")
    torch.manual_seed(0)
    model = CustomResNet(width=8).to(rt.device, memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True, weight_decay=5e-4)
    d = data.synthetic_cifar10(256, 8)
    batches = list(data.DeviceLoader(d.train_images, d.train_labels, 64, train=True, device=rt.device))
    train.train_step(train.Learner(model, model, opt, rt.grad_scaler(), torch.nn.CrossEntropyLoss(), rt), *batches[0])
    before = {k: v.clone() for k, v in model.state_dict().items()}
    momentum = {i: s["momentum_buffer"].clone() for i, s in enumerate(opt.state.values())}
    scaler = rt.grad_scaler()
    res = lr_range_test(model, opt, F.cross_entropy, batches, start_lr=1e-3, end_lr=1.0, num_iter=8,
                        autocast=rt.autocast, scaler=scaler if scaler.is_enabled() else None)
    assert len(res.lrs) >= 2
    for k, v in model.state_dict().items():
        assert v.device.type == device and torch.equal(v, before[k]), k
    for i, s in enumerate(opt.state.values()):
        assert torch.equal(s["momentum_buffer"], momentum[i])
    assert model.training


@pytest.mark.parametrize("device", ACCELERATORS)
def test_gradcam_on_the_device_equals_the_cpus(device):
    torch.manual_seed(0)
    model = CustomResNet(width=16).eval()
    x = torch.randn(6, 3, 32, 32)
    with full_fp32():
        with GradCAM(model, "layer3") as cam:
            expected = cam(x, targets=[0, 1, 2, 3, 4, 5])
        model.to(device, memory_format=torch.channels_last)
        with GradCAM(model, "layer3") as cam:
            got = cam(x.to(device), targets=[0, 1, 2, 3, 4, 5])
    assert got.device.type == device and got.shape == (6, 32, 32)
    torch.testing.assert_close(got.cpu(), expected, atol=1e-3, rtol=0)        # maps are in [0, 1]


@pytest.mark.parametrize("device", ACCELERATORS)
def test_device_timer_waits_for_the_devices_work(device):
    rt = utils.pick_runtime(device, "fp32")
    a = torch.randn(2048, 2048, device=rt.device)
    (a @ a).sum().item()                                  # warm-up
    start = time.perf_counter()
    timer = rt.timer().start()
    for _ in range(20):
        a = (a @ a) / 2048 ** 0.5
    measured = timer.stop()                               # must include the queued matmuls
    wall = time.perf_counter() - start
    assert 0 < measured <= wall * 1.05 + 1e-3
    assert measured > 0.5 * wall                          # the work, not just the launches


# ----------------------------------------------------------------------------------------------
# A whole run, and its files on a machine without the device

@pytest.mark.parametrize("device", ACCELERATORS)
def test_a_run_on_the_device_learns_and_resumes_on_the_device_and_on_the_cpu(
        device, tmp_path, interrupt_in_epoch):
    # Ctrl-C in epoch 3 (one evaluation batch an epoch): the checkpoint holds 2 epochs.
    with interrupt_in_epoch(3), pytest.raises(utils.Interrupted):
        train.main(synthetic=True, synthetic_train=2560, synthetic_test=512, width=16, batch_size=128,
                   epochs=3, device=device, progress=False, out_dir=str(tmp_path))      # range test first
    checkpoint = str(tmp_path / "checkpoint.pt")
    assert torch.load(checkpoint, map_location="cpu", weights_only=True)["epoch"] == 2
    after_2 = str(tmp_path / "after_2_epochs.pt")       # the run below overwrites checkpoint.pt
    shutil.copy(checkpoint, after_2)

    r = train.main(resume=checkpoint, progress=False)                                  # on the device
    assert r["status"] == "complete" and r["runtime"]["device"].startswith(device)
    assert [h["epoch"] for h in r["history"]] == [1, 2, 3]
    assert r["test_accuracy"] > 40                                                     # chance is 10%
    assert r["timings"]["train_seconds"] > 0 and r["timings"]["images_per_second"] > 0
    weights = torch.load(tmp_path / "model.pt", weights_only=True)                     # no map_location
    assert all(v.device.type == "cpu" for v in weights.values())
    for name in ("gradcam.png", "misclassified.png", "curves.png", "lr_range_test.png"):
        assert (tmp_path / name).stat().st_size > 10_000, name

    on_cpu = train.main(resume=after_2, device="cpu", precision="fp32", progress=False, plots=False,
                        out_dir=str(tmp_path / "cpu"))
    assert on_cpu["history"][:2] == r["history"][:2] and len(on_cpu["history"]) == 3
    assert on_cpu["runtime"]["device"] == "cpu"
    assert on_cpu["test_accuracy"] > 40
