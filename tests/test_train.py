"""train.py's pieces, one at a time: the one-cycle schedule against torch's OneCycleLR, the model
and optimizer as built, the LRs given, one training step (fp16's skipped overflow included), one
epoch, the weight average and the compile warm-up. Whole runs are in test_run.py."""
import copy

import pytest
import torch
import torch.nn.functional as F
from torch.optim.optimizer import register_optimizer_step_pre_hook

import data as cifar
import report
import train
import utils

CPU = utils.Runtime(torch.device("cpu"), "fp32")


def torch_one_cycle_lrs(total, lr_min, lr_max, pct_start):
    """The LR torch's OneCycleLR gives each of `total` steps, with the specification's settings."""
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=lr_min)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=lr_max, total_steps=total, pct_start=pct_start, anneal_strategy="linear",
        div_factor=lr_max / lr_min, final_div_factor=1.0, three_phase=False, cycle_momentum=False)
    lrs = []
    for _ in range(total):
        lrs.append(opt.param_groups[0]["lr"])   # the LR the step uses
        opt.step()
        sched.step()
    return lrs


# ----------------------------------------------------------------------------------------------
# The schedule

@pytest.mark.parametrize("epochs, peak_epoch, steps_per_epoch", [(24, 5, 97), (24, 5, 7), (2, 2 * 5 / 24, 5), (10, 2, 13)])
def test_one_cycle_lr_equals_torch_one_cycle_at_every_step(epochs, peak_epoch, steps_per_epoch):
    lr_min, lr_max = 0.04, 0.4
    total = epochs * steps_per_epoch
    peak = peak_epoch * steps_per_epoch - 1
    ours = [train.one_cycle_lr(s, total, peak, lr_min, lr_max) for s in range(total)]
    ref = torch_one_cycle_lrs(total, lr_min, lr_max, peak_epoch / epochs)
    assert ours == pytest.approx(ref, rel=1e-9, abs=1e-12)
    assert ours[0] == pytest.approx(lr_min)                              # first step
    if float(peak).is_integer():
        assert ours[int(peak)] == pytest.approx(lr_max)                  # peak: last step of epoch 5
    assert max(ours) <= lr_max * (1 + 1e-12)
    assert ours[-1] == pytest.approx(lr_min)                             # last step
    assert min(ours) >= lr_min * (1 - 1e-12)                             # no annihilation


def test_one_cycle_lr_never_goes_below_lr_min_even_past_the_end():
    # OneCycleLR extrapolates below LRMIN after its last step; ours stays at LRMIN.
    assert train.one_cycle_lr(2400, 2328, 484, 0.04, 0.4) == 0.04


def test_default_peak_is_5_of_24_epochs_and_scales_with_epochs():
    assert train.Config.from_keywords({}).peak_epoch == 5
    assert train.Config.from_keywords({"epochs": 12}).peak_epoch == 2.5
    assert train.Config.from_keywords({"epochs": 12, "peak_epoch": 3}).peak_epoch == 3


# ----------------------------------------------------------------------------------------------
# LRMIN and LRMAX given

@pytest.mark.parametrize("given, expected", [
    (dict(lr_min=0.01, lr_max=0.3), (0.01, 0.3, "given")),
    (dict(lr_max=0.4, lr_min_factor=8.0), (0.05, 0.4, "lr_max given, lr_min = lr_max / 8")),
    (dict(lr_min=0.02, lr_min_factor=20.0), (0.02, 0.4, "lr_min given, lr_max = lr_min * 20")),
])
def test_given_lrs_are_used_and_the_missing_one_follows_from_the_factor(given, expected):
    cfg = train.Config.from_keywords(given)
    lr_min, lr_max, how, result = train.find_lrs(cfg, None, None)     # no test: needs no model
    assert (lr_min, lr_max) == pytest.approx(expected[:2]) and how == expected[2] and result is None


# ----------------------------------------------------------------------------------------------
# One step

def test_a_training_step_is_one_sgd_step_on_the_batchs_loss():
    """The step equals one torch.optim.SGD step on the cross-entropy of the batch, computed here."""
    cfg = train.Config.from_keywords(dict(width=4, lr_min=0.05, lr_max=0.5))
    learner = train.build(cfg, CPU, steps_per_epoch=1)
    reference = copy.deepcopy(learner.model)
    ref_opt = torch.optim.SGD(reference.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4)
    x = torch.randn(8, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    y = torch.arange(8)
    logits, loss = train.train_step(learner, x, y)
    ref_loss = F.cross_entropy(reference(x), y)
    ref_loss.backward()
    ref_opt.step()
    assert loss.item() == pytest.approx(ref_loss.item(), rel=1e-6) and logits.shape == (8, 10)
    assert not logits.requires_grad and not loss.requires_grad
    for (name, p), q in zip(learner.model.named_parameters(), reference.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-7, msg=name)


def test_an_fp16_overflow_step_is_skipped_whole_even_the_first():
    """GradScaler skips a step whose gradients overflowed, which fp16's first steps usually do.
    torch's fused SGD does not skip it whole: on a first step it leaves uninitialised memory in
    the momentum buffer (seen with torch 2.14 on the CPU) and the weights blow up a step later,
    so train.build must not hand out a fused SGD."""
    cfg = train.Config.from_keywords(dict(width=8, precision="fp16", lr_min=0.02, lr_max=0.2))
    learner = train.build(cfg, utils.pick_runtime("cpu", "fp16"), steps_per_epoch=1)
    model, optimizer, scaler = learner.model, learner.optimizer, learner.scaler
    assert scaler.is_enabled() and not optimizer.defaults.get("fused")
    x = torch.randn(8, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    y = torch.arange(8)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    scale = scaler.get_scale()
    train.train_step(learner, x * float("inf"), y)                               # overflows
    assert scaler.get_scale() == scale / 2                                       # so it was skipped
    params = {k for k, _ in model.named_parameters()}
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items() if k in params)
    assert not optimizer.state                                                   # no momentum made yet
    for _ in range(2):
        train.train_step(learner, x, y)
    assert all(torch.isfinite(p).all() for p in model.parameters())


# ----------------------------------------------------------------------------------------------
# One epoch

def small_learner(width=4, **settings):
    cfg = train.Config.from_keywords({"width": width, "lr_min": 0.01, "lr_max": 0.1, "progress": False, **settings})
    return cfg, train.build(cfg, CPU, steps_per_epoch=8)


def test_an_epoch_sets_the_lr_of_every_step_and_returns_its_mean_loss_and_accuracy():
    d = cifar.synthetic_cifar10(64, 8)
    loader = cifar.DeviceLoader(d.train_images, d.train_labels, 8, train=True, device="cpu")
    cfg, learner = small_learner(log_every=3)
    lrs, losses, correct = [], [], []
    real_step = train.train_step

    def record(optimizer, args, kwargs):
        lrs.append(optimizer.param_groups[0]["lr"])
    handle = register_optimizer_step_pre_hook(record)
    try:
        loss, acc = train.train_one_epoch(learner, loader, lambda s: 0.001 * s, 3, cfg)
    finally:
        handle.remove()
    assert lrs == pytest.approx([0.001 * s for s in range(16, 24)])     # epoch 3: steps 16..23
    assert real_step is train.train_step and learner.net.training
    # Its mean loss and accuracy are those of the same steps replayed from the same start.
    cfg2, again = small_learner(log_every=3)
    for i, (x, y) in enumerate(cifar.DeviceLoader(d.train_images, d.train_labels, 8, train=True, device="cpu")):
        for g in again.optimizer.param_groups:
            g["lr"] = 0.001 * (16 + i)
        logits, step_loss = train.train_step(again, x, y)
        losses.append(step_loss.item())
        correct.append(int((logits.argmax(1) == y).sum()))
    assert loss == pytest.approx(sum(losses) / 8, rel=1e-6) and acc == pytest.approx(100 * sum(correct) / 64)


@pytest.mark.parametrize("log_every, steps_run", [(1, 3), (4, 4), (10, 8)])
def test_a_non_finite_loss_is_raised_at_the_first_read_after_it(log_every, steps_run):
    """The loss of step 2 (0-based) is NaN; the loop reads the device flag every log_every steps
    and at the end of the epoch (8 steps), so it stops after the first read at or after step 2."""
    d = cifar.synthetic_cifar10(64, 8)
    loader = cifar.DeviceLoader(d.train_images, d.train_labels, 8, train=True, device="cpu")
    cfg, learner = small_learner(log_every=log_every)
    calls = []

    def loss_fn(logits, y):
        calls.append(1)
        return F.cross_entropy(logits, y) * (float("nan") if len(calls) == 3 else 1.0)
    learner.loss_fn = loss_fn
    with pytest.raises(FloatingPointError, match="^18$"):      # epoch 3 starts at step 16; 16 + 2
        train.train_one_epoch(learner, loader, lambda s: 0.01, 3, cfg)
    assert len(calls) == steps_run


class RecordedBar(train.tqdm):
    """tqdm that records what it shows: its description at every update, its postfix."""
    shown = []

    def update(self, n=1):
        RecordedBar.shown.append((self.desc, self.postfix, self.n + n, self.total))
        return super().update(n)


def test_the_course_log_line_follows_the_bar_from_the_first_step_reading_the_device_only_every_log_every(
        monkeypatch):
    """The bar shows Batch_id of the step it has just counted, at every step, with the loss and
    accuracy last read from the device (the first step, then every log_every steps)."""
    monkeypatch.setattr(train, "tqdm", RecordedBar)
    RecordedBar.shown = []
    d = cifar.synthetic_cifar10(64, 8)
    loader = cifar.DeviceLoader(d.train_images, d.train_labels, 8, train=True, device="cpu")
    cfg, learner = small_learner(log_every=3, progress=True)
    train.train_one_epoch(learner, loader, lambda s: 0.01, 2, cfg)
    labels = [desc for desc, _, _, _ in RecordedBar.shown]
    assert [int(label.split("Batch_id=")[1].split()[0]) for label in labels] == list(range(8))
    assert all(label.startswith("Epoch 2/24 Loss=") and " Accuracy=" in label for label in labels)
    figures = [label.replace(f"Batch_id={i} ", "") for i, label in enumerate(labels)]
    # read at steps 0, 2, 5 and 7 (the last): the figures change there only
    assert [i for i in range(1, 8) if figures[i] != figures[i - 1]] == [2, 5, 7]


def test_the_pace_of_the_first_steps_is_reported_once_at_the_second_read():
    d = cifar.synthetic_cifar10(64, 8)
    loader = cifar.DeviceLoader(d.train_images, d.train_labels, 8, train=True, device="cpu")
    cfg, learner = small_learner(log_every=3)
    paces = []
    train.train_one_epoch(learner, loader, lambda s: 0.01, 1, cfg, on_pace=lambda *a: paces.append(a))
    assert len(paces) == 1 and paces[0][1] == 2 and paces[0][0] > 0     # steps 1 and 2 timed


def test_the_expected_time_is_the_rest_of_the_training_at_that_pace_plus_the_evaluations(capsys, monkeypatch):
    monkeypatch.setattr(report.time, "perf_counter", lambda: 100.0)
    say = report.expected_time(started=70.0, steps_left=60, images_evaluated=3000, batch_size=125)
    say(0.5, 9)       # 0.5 s a step over steps 1-9: 50 steps left, and 3000 / 125 / 3 = 8 steps' worth
    line = capsys.readouterr().out
    assert line.startswith("expected: about 59 s for this run on this device, 29 s of it still to come ")
    assert "(0.5 s a training step over steps 2-10;" in line
    say(60.0, 9)
    assert capsys.readouterr().out.startswith("expected: about 58 min for this run on this device, 58 min of it")
    say(600.0, 9)
    assert capsys.readouterr().out.startswith("expected: about 9 h 40 min for this run on this device, 9 h 40 min")


def test_a_run_says_its_expected_time_once_and_the_range_test_shows_a_bar(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(train, "tqdm", RecordedBar)
    monkeypatch.setattr(report, "tqdm", RecordedBar)
    RecordedBar.shown = []
    record = train.main(synthetic=True, synthetic_train=256, synthetic_test=64, width=4, batch_size=32, epochs=2,
                        lr_test_iters=6, precision="fp32", device="cpu", plots=False, log_every=3,
                        out_dir=str(tmp_path))
    out = capsys.readouterr().out
    assert out.count("expected: about ") == 1 and "over steps 2-3;" in out
    # the range test's bar: one update per step it recorded, the step's LR and loss beside it
    test = [(postfix, n, total) for desc, postfix, n, total in RecordedBar.shown if desc == "LR range test"]
    steps = record["lr_range_test"]
    assert [n for _, n, _ in test] == list(range(1, len(steps["lrs"]) + 1)) and {t for _, _, t in test} == {6}
    assert test[-1][0] == f"LR {steps['lrs'][-1]:.3g} loss {steps['losses'][-1]:.3f}"


# ----------------------------------------------------------------------------------------------
# The learner's state, the weight average, the compile warm-up

def test_the_learners_state_goes_round_trip_with_the_average_and_the_scaler():
    cfg, a = small_learner(ema_epochs=1.0, precision="fp16")
    a = train.build(cfg, utils.pick_runtime("cpu", "fp16"), steps_per_epoch=2)
    x, y = torch.randn(4, 3, 32, 32).contiguous(memory_format=torch.channels_last), torch.arange(4)
    for _ in range(3):
        train.train_step(a, x, y)
        a.average.update()
    state = copy.deepcopy(a.state_dict())
    assert set(state) == {"model", "average", "optimizer", "scaler"} and state["scaler"]["scale"] > 0
    b = train.build(cfg, utils.pick_runtime("cpu", "fp16"), steps_per_epoch=2)
    b.load_state_dict(state)
    for k, v in a.model.state_dict().items():
        assert torch.equal(v, b.model.state_dict()[k])
        assert torch.equal(a.average.model.state_dict()[k], b.average.model.state_dict()[k])
    assert b.scaler.get_scale() == a.scaler.get_scale() and b.optimizer.state_dict()["state"].keys() == \
        a.optimizer.state_dict()["state"].keys()
    assert b.evaluated is b.average.model and b.final is b.average.model


def test_the_weight_average_is_an_exponential_moving_average_with_a_time_constant_in_epochs():
    model = torch.nn.BatchNorm2d(2)
    average = train.WeightAverage(model, ema_epochs=0.5, steps_per_epoch=4)
    d = torch.exp(torch.tensor(-1 / 2.0)).item()
    assert average.decay == pytest.approx(d)
    expected = model.weight.detach().clone()
    for v in (1.0, 3.0, -2.0):
        with torch.no_grad():
            model.weight.fill_(v)
            model.num_batches_tracked.fill_(int(v + 5))
        average.update()
        expected = d * expected + (1 - d) * v
    torch.testing.assert_close(average.model.weight, expected)
    assert average.model.num_batches_tracked == model.num_batches_tracked       # counts are copied
    assert not average.model.weight.requires_grad and not average.model.training


def test_the_compile_warm_up_undoes_its_step(monkeypatch):
    real = torch.compile
    monkeypatch.setattr(torch, "compile", lambda model, **kw: real(model, backend="eager", **kw))
    cfg, learner = small_learner()
    before = copy.deepcopy(learner.state_dict())
    d = cifar.synthetic_cifar10(16, 8)
    test_loader = cifar.DeviceLoader(d.test_images, d.test_labels, 8, train=False, device="cpu")
    x, y = next(iter(cifar.DeviceLoader(d.train_images, d.train_labels, 8, train=True, device="cpu")))
    seconds = train.compile_now(learner, (x, y), test_loader)
    assert seconds > 0 and learner.net is not learner.model
    after = learner.state_dict()
    assert all(torch.equal(v, after["model"][k]) for k, v in before["model"].items())
    assert after["optimizer"]["state"] == {} == before["optimizer"]["state"]
