"""Tests of lr_finder.py: CPU, deterministic, a few seconds in all.

The references are independent of the code under test where one exists: numpy's geomspace
and linspace for the LR sequence, the closed form of the exponential moving average for the
smoothing, and plain bitwise comparison of state before and after.
"""
import copy
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import lr_finder
from lr_finder import RangeTestResult, lr_range_test, pick_lrs, plot_range_test

REPO = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------- helpers
def _regression(n_batches=3, batch=16, d=4, noise=0.1, seed=0):
    """Batches of a noisy linear regression: easy data a tiny linear model can learn."""
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(d, 1, generator=g)
    out = []
    for _ in range(n_batches):
        x = torch.randn(batch, d, generator=g)
        out.append((x, x @ w + noise * torch.randn(batch, 1, generator=g)))
    return out


def _bn_net():
    """Conv >> BN >> ReLU >> Linear on (N, 3, 4, 4) images: parameters and BN buffers."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                         nn.Flatten(), nn.Linear(4 * 4 * 4, 3))


def _images(n_batches=3, batch=8, seed=1):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(batch, 3, 4, 4, generator=g), torch.randint(0, 3, (batch,), generator=g))
            for _ in range(n_batches)]


def _state(model, opt, scaler=None):
    """A deep copy of everything the range test must leave untouched."""
    return {
        "model": {k: v.clone() for k, v in model.state_dict().items()},
        "optimizer": copy.deepcopy(opt.state_dict()),
        "training": [m.training for m in model.modules()],
        "grads": [None if p.grad is None else p.grad.clone() for p in model.parameters()],
        "scaler": None if scaler is None else scaler.state_dict(),
    }


def _assert_identical(a, b, where="state"):
    """Bit-for-bit equality of nested dicts/lists of tensors and plain values."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor), where
        assert (a.dtype, a.device, a.shape) == (b.dtype, b.device, b.shape), where
        assert torch.equal(a, b), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            _assert_identical(a[k], b[k], f"{where}[{k!r}]")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (u, v) in enumerate(zip(a, b)):
            _assert_identical(u, v, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def _differs(a, b):
    try:
        _assert_identical(a, b)
    except AssertionError:
        return True
    return False


# ----------------------------------------------------------------------------- 1. LR sequence
@pytest.mark.parametrize("mode", ["exp", "linear"])
def test_lr_sequence_is_exact_in_every_param_group(mode):
    torch.manual_seed(0)
    model = nn.Linear(4, 1)
    opt = torch.optim.SGD([{"params": [model.weight], "lr": 0.5},
                           {"params": [model.bias], "lr": 0.25}], lr=0.5, momentum=0.9)
    seen = []      # the LRs the optimizer holds when each batch's loss is computed

    def loss_fn(out, y):
        seen.append([g["lr"] for g in opt.param_groups])
        return F.mse_loss(out, y)

    start, end, n = 1e-3, 2e-2, 9
    res = lr_range_test(model, opt, loss_fn, _regression(), start_lr=start, end_lr=end,
                        num_iter=n, mode=mode)
    assert res.stop_reason == "completed" and len(res.lrs) == n
    if mode == "exp":
        formula = [start * (end / start) ** (i / (n - 1)) for i in range(n)]
        reference = np.geomspace(start, end, n)
    else:
        formula = [start + (end - start) * i / (n - 1) for i in range(n)]
        reference = np.linspace(start, end, n)
    assert res.lrs == formula
    np.testing.assert_allclose(res.lrs, reference, rtol=1e-12, atol=0)
    assert res.lrs[0] == start
    assert seen == [[lr, lr] for lr in res.lrs]      # every group, the LR actually used
    assert [g["lr"] for g in opt.param_groups] == [0.5, 0.25]   # restored afterwards


# ----------------------------------------------------------------------------- 2. restore
OPTIMIZERS = {
    "sgd-nesterov": lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, nesterov=True,
                                              weight_decay=5e-4),
    "adam": lambda p: torch.optim.Adam(p, lr=1e-3),
}


def _prepared(opt_name):
    """Net + optimizer after two real steps (momentum/Adam buffers exist, BN stats moved,
    grads left in .grad), then put in a mixed mode: training, but the BN frozen in eval."""
    model = _bn_net()
    opt = OPTIMIZERS[opt_name](model.parameters())
    for x, y in _images(2, seed=7):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    model.train()
    model[1].eval()
    assert opt.state_dict()["state"] and model[1].num_batches_tracked.item() == 2
    return model, opt


@pytest.mark.parametrize("opt_name", sorted(OPTIMIZERS))
def test_state_restored_bit_for_bit(opt_name):
    model, opt = _prepared(opt_name)
    before = _state(model, opt)
    changed = []   # proof that the test really moved the state it then restores

    def hook(i, lr, loss):
        now = _state(model, opt)
        changed.append((_differs(before["model"], now["model"]),
                        _differs(before["optimizer"], now["optimizer"])))

    res = lr_range_test(model, opt, F.cross_entropy, _images(), start_lr=1e-3, end_lr=1.0,
                        num_iter=5, step_hook=hook)
    assert res.stop_reason == "completed"
    assert changed[-1] == (True, True)
    _assert_identical(before, _state(model, opt))
    assert model.training and not model[1].training


@pytest.mark.parametrize("opt_name", sorted(OPTIMIZERS))
def test_state_restored_when_loss_fn_raises(opt_name):
    model, opt = _prepared(opt_name)
    before = _state(model, opt)
    calls = []

    def loss_fn(out, y):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("boom")
        return F.cross_entropy(out, y)

    with pytest.raises(RuntimeError, match="boom"):
        lr_range_test(model, opt, loss_fn, _images(), start_lr=1e-3, end_lr=1.0, num_iter=5)
    _assert_identical(before, _state(model, opt))


def test_grad_scaler_state_restored():
    model, opt = _prepared("sgd-nesterov")
    scaler = torch.amp.GradScaler("cpu", init_scale=16.0, growth_interval=1)
    before = _state(model, opt, scaler)
    scales = []
    lr_range_test(model, opt, F.cross_entropy, _images(), start_lr=1e-3, end_lr=1e-1,
                  num_iter=4, scaler=scaler, step_hook=lambda i, lr, loss: scales.append(
                      scaler.get_scale()))
    assert scales[-1] > 16.0                     # the scaler did grow during the test
    _assert_identical(before, _state(model, opt, scaler))
    # a disabled scaler (what a float32/bfloat16 run passes) is a plain step
    off = torch.amp.GradScaler("cpu", enabled=False)
    res = lr_range_test(model, opt, F.cross_entropy, _images(), end_lr=1e-1, num_iter=3,
                        scaler=off)
    assert res.stop_reason == "completed" and off.state_dict() == {}


# ----------------------------------------------------------------------------- 3. non-finite loss
@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_non_finite_loss_stops_without_recording_it(bad):
    k = 4                          # 1-based step whose loss is non-finite
    model, opt = _prepared("sgd-nesterov")
    before = _state(model, opt)
    calls, hooked = [], []

    def loss_fn(out, y):
        calls.append(1)
        loss = F.cross_entropy(out, y)
        return loss * bad if len(calls) >= k else loss

    res = lr_range_test(model, opt, loss_fn, _images(), start_lr=1e-3, end_lr=1.0,
                        num_iter=20, step_hook=lambda *a: hooked.append(a))
    assert res.stop_reason == "non-finite loss"
    assert len(calls) == k                       # stopped at once: no step through NaN
    assert len(res.lrs) == len(res.losses) == len(res.smoothed) == len(hooked) == k - 1
    assert all(math.isfinite(v) for v in res.losses + res.smoothed)
    assert math.isfinite(res.lr_max) and math.isfinite(res.lr_min) and res.lr_min > 0
    _assert_identical(before, _state(model, opt))


def test_non_finite_first_loss_raises_and_restores():
    model, opt = _prepared("adam")
    before = _state(model, opt)
    with pytest.raises(RuntimeError, match="very first step.*lower start_lr"):
        lr_range_test(model, opt, lambda out, y: F.cross_entropy(out, y) * math.nan,
                      _images(), num_iter=5)
    _assert_identical(before, _state(model, opt))


# ----------------------------------------------------------------------------- 4. divergence
def test_divergence_stops_early_and_lr_max_backs_off():
    # plain SGD on least squares is unstable once lr > 2 / (largest Hessian eigenvalue), here
    # about 1: the loss then grows geometrically, a real divergence rather than a faked one
    torch.manual_seed(0)
    model = nn.Linear(4, 1, bias=False)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    n = 60
    res = lr_range_test(model, opt, F.mse_loss, _regression(batch=64), start_lr=1e-3,
                        end_lr=1e3, num_iter=n)
    assert res.stop_reason == "diverged"
    assert len(res.lrs) < n
    assert res.smoothed[-1] > 5.0 * min(res.smoothed[:-1])        # the stop criterion held
    assert all(res.smoothed[i] <= 5.0 * min(res.smoothed[:i + 1]) for i in range(len(res.lrs) - 1))
    assert all(math.isfinite(v) for v in res.losses)
    i_min = int(np.argmin(res.smoothed))                           # one minimum, then a blow-up
    assert res.lr_max == res.lrs[i_min] / lr_finder.BACKOFF
    assert res.lr_max < res.lrs[-1]                                # below the stop
    assert res.note == ""


# ----------------------------------------------------------------------------- 5. the rule
def _lrs(n=101):
    return np.logspace(-4, 1, n).tolist()


def test_pick_lrs_on_u_shaped_curve():
    lrs = _lrs()
    smoothed = [(math.log10(lr) - math.log10(0.3)) ** 2 for lr in lrs]
    lr_max, lr_min, rule, note = pick_lrs(lrs, smoothed, backoff=10.0, min_factor=10.0)
    i = int(np.argmin(smoothed))
    assert abs(math.log10(lrs[i] / 0.3)) <= 0.05 / 2 + 1e-12     # within half a grid step
    assert lr_max == lrs[i] / 10.0
    assert lr_min == lr_max / 10.0
    assert note == ""
    assert "/ 10" in rule and "smoothed" in rule
    # the defaults are the module's constants
    d_max, d_min, d_rule, _ = pick_lrs(lrs, smoothed)
    assert d_max == lrs[i] / lr_finder.BACKOFF and d_min == d_max / lr_finder.MIN_FACTOR
    assert f"{100 * lr_finder.RISE:g}%" in d_rule
    # the parameters are the rule's, not constants
    lr_max3, lr_min3, rule3, _ = pick_lrs(lrs, smoothed, backoff=3.0, min_factor=20.0)
    assert lr_max3 == lrs[i] / 3.0 and lr_min3 == lr_max3 / 20.0 and "/ 3" in rule3


def test_pick_lrs_notes_and_edge_cases():
    lrs = _lrs(50)
    falling = [1.0 / (1 + k) for k in range(50)]
    rising = [1.0 + k for k in range(50)]
    lr_max, _, _, note = pick_lrs(lrs, falling, backoff=10.0)
    assert lr_max == lrs[-1] / 10.0 and note == "the loss was still falling at end_lr: raise end_lr"
    _, _, _, note = pick_lrs(lrs, falling, stop_reason="non-finite loss")
    assert "raise end_lr" not in note and "non-finite" in note
    lr_max, _, _, note = pick_lrs(lrs, rising, backoff=10.0)
    assert lr_max == lrs[0] / 10.0 and note == "the loss never fell: lower start_lr"
    lr_max, _, _, note = pick_lrs([0.5], [2.0], backoff=10.0)
    assert lr_max == 0.05 and "one" in note
    # ties: the first (smaller) LR is the conservative choice
    assert pick_lrs([1.0, 2.0, 3.0], [3.0, 1.0, 1.0], backoff=10.0)[0] == 0.2
    for kwargs in ({"backoff": 0.5}, {"min_factor": 1.0}, {"backoff": math.nan}, {"rise": 0.0},
                   {"rise": math.nan}):
        with pytest.raises(ValueError):
            pick_lrs(lrs, falling, **kwargs)
    with pytest.raises(ValueError):
        pick_lrs([], [])
    with pytest.raises(ValueError):
        pick_lrs([1.0, 2.0], [1.0])
    with pytest.raises(ValueError):
        pick_lrs([1.0, 2.0], [1.0, math.nan])


def test_a_second_descent_after_the_loss_turned_up_is_ignored():
    # Shape measured on JPEG copies of CIFAR-10 training images (10,000 images, 100 steps, docs/lr-rule.md): the loss falls
    # to a minimum near LR 0.3, rises ~9%, then falls again to a LOWER value near LR 8, where
    # training at that LR fails. The pick must stay at the first minimum.
    lrs = [0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4]
    smoothed = [2.0, 1.9, 1.82, 1.99, 1.95, 1.85, 1.75]
    lr_max, lr_min, rule, note = pick_lrs(lrs, smoothed, backoff=1.0, min_factor=10.0, rise=0.05)
    assert lr_max == 0.4 and lr_min == pytest.approx(0.04) and note == ""
    # a rise within the threshold is ragged noise, not the turn: the later, lower minimum counts
    bump = [2.0, 1.9, 1.82, 1.88, 1.80, 1.95, 2.5]               # 1.88 < 1.05 * 1.82
    assert pick_lrs(lrs, bump, backoff=1.0, rise=0.05)[0] == 1.6
    assert pick_lrs(lrs, bump, backoff=1.0, rise=0.01)[0] == 0.4  # the threshold is the parameter's
    # first_minimum is the index the rule reads
    assert lr_finder.first_minimum(smoothed, 0.05) == 2 and lr_finder.first_minimum(bump, 0.05) == 4
    assert lr_finder.first_minimum([3.0, 2.0, 1.0], 0.05) == 2   # never rose: the last point
    # a rise before the loss has fallen at all is the noise of the flat start, not the turn
    noisy_start = [2.0, 2.15, 2.1, 1.9, 1.7, 1.6, 1.9]
    assert lr_finder.first_minimum(noisy_start, 0.05) == 5


# ----------------------------------------------------------------------------- 6. smoothing
def _prescribed(values):
    """A loss_fn that returns the given values in turn (zero gradient: the model stays put)."""
    it = iter(values)
    return lambda out, y: out.sum() * 0.0 + next(it)


def test_smoothing_by_hand():
    losses = [4.0, 2.0, 3.0, 1.0, 0.5]          # exact in float32
    model = nn.Linear(4, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    res = lr_range_test(model, opt, _prescribed(losses), _regression(), num_iter=5, smooth=0.5)
    assert res.losses == losses
    assert res.smoothed == [4.0, 3.0, 3.0, 2.0, 1.25]


def test_smoothing_matches_closed_form():
    # s_i = (1-a)^i l_0 + sum_{j=1..i} a (1-a)^(i-j) l_j: the EMA with s_0 = l_0 unrolled
    rng = np.random.default_rng(0)
    losses = [float(np.float32(v)) for v in rng.uniform(1.0, 2.0, 12)]
    a = 0.05
    model = nn.Linear(4, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    res = lr_range_test(model, opt, _prescribed(losses), _regression(), num_iter=12, smooth=a)
    assert res.losses == losses and res.stop_reason == "completed"
    for i, s in enumerate(res.smoothed):
        ref = (1 - a) ** i * losses[0] + sum(a * (1 - a) ** (i - j) * losses[j]
                                             for j in range(1, i + 1))
        assert math.isclose(s, ref, rel_tol=1e-12)


# ----------------------------------------------------------------------------- 7. batches, args
def test_short_batches_are_cycled_in_order():
    model = nn.Linear(4, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    batches = _regression(n_batches=3)
    fed = []
    model.register_forward_pre_hook(lambda m, args: fed.append(args[0]))
    res = lr_range_test(model, opt, F.mse_loss, batches, start_lr=1e-3, end_lr=1e-2, num_iter=7)
    assert len(res.lrs) == 7
    assert all(x is batches[i % 3][0] for i, x in enumerate(fed)) and len(fed) == 7


def test_empty_and_exhausted_batches():
    model = nn.Linear(4, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    before = _state(model, opt)
    with pytest.raises(ValueError, match="no batch"):
        lr_range_test(model, opt, F.mse_loss, [], num_iter=5)
    with pytest.raises(ValueError, match="no batch"):
        lr_range_test(model, opt, F.mse_loss, (b for b in []), num_iter=5)
    with pytest.raises(ValueError, match="one-shot"):
        lr_range_test(model, opt, F.mse_loss, (b for b in _regression(3)), num_iter=5)
    _assert_identical(before, _state(model, opt))
    # a generator long enough is fine
    res = lr_range_test(model, opt, F.mse_loss, (b for b in _regression(5)), end_lr=1e-2,
                        num_iter=5)
    assert len(res.lrs) == 5


@pytest.mark.parametrize("bad", [
    {"start_lr": 0.0}, {"start_lr": -1e-3}, {"start_lr": math.nan}, {"end_lr": 1e-4},
    {"end_lr": 1e-5}, {"num_iter": 1}, {"num_iter": 2.5}, {"mode": "cos"}, {"smooth": 0.0},
    {"smooth": 1.5}, {"diverge": 1.0}, {"backoff": 0.5}, {"min_factor": 1.0},
    {"autocast": "bf16"},
])
def test_invalid_arguments_raise_before_training(bad):
    model = nn.Linear(4, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    calls = []
    with pytest.raises(ValueError):
        lr_range_test(model, opt, lambda o, y: calls.append(1) or F.mse_loss(o, y),
                      _regression(), **{"num_iter": 5, **bad})
    assert calls == []


def test_autocast_factory_and_hook_called_every_step():
    model = nn.Linear(4, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    entered, hooked = [], []

    def autocast():
        entered.append(torch.is_grad_enabled())
        return torch.autocast("cpu", dtype=torch.bfloat16)

    res = lr_range_test(model, opt, lambda o, y: F.mse_loss(o.float(), y), _regression(),
                        end_lr=1e-2, num_iter=4, autocast=autocast,
                        step_hook=lambda i, lr, loss: hooked.append((i, lr, loss)))
    assert len(entered) == 4
    assert hooked == list(zip(range(4), res.lrs, res.losses))
    json.dumps(res.to_dict())                    # JSON-ready
    assert res.to_dict()["lr_max"] == res.lr_max


# ----------------------------------------------------------------------------- 8. plot, imports
def test_plot_writes_a_non_blank_png(tmp_path):
    from matplotlib.figure import Figure
    from matplotlib.image import imread

    lrs = _lrs(60)
    losses = [(math.log10(lr) + 0.5) ** 2 + 1.0 for lr in lrs]
    losses[-3:] = [50.0, 1e3, 1e5]               # a divergent tail
    lr_max, lr_min, rule, note = pick_lrs(lrs, losses, backoff=10.0)
    res = RangeTestResult(lrs, losses, losses, lr_max, lr_min, "diverged", rule, note)
    path = tmp_path / "range_test.png"
    fig = plot_range_test(res, path)
    assert isinstance(fig, Figure)
    img = imread(path)
    assert img.ndim == 3 and img.shape[0] > 100 and img.std() > 0
    ax = fig.axes[0]
    labels = ax.get_legend_handles_labels()[1]
    assert f"LRMAX = {lr_max:.3g}" in labels and f"LRMIN = {lr_min:.3g}" in labels
    assert ax.get_xscale() == "log" and ax.get_ylim()[1] < 100   # the tail is clipped

    own = Figure().add_subplot()
    assert plot_range_test(res, ax=own) is own.figure


def test_import_does_not_load_matplotlib():
    env = dict(os.environ, PYTHONPATH=str(REPO))
    code = "import lr_finder, sys; assert 'matplotlib' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, check=True)


# ----------------------------------------------------------------------------- 9. integration
def test_custom_resnet_run_completes_and_restores():
    from custom_resnet import CustomResNet

    torch.manual_seed(0)
    model = CustomResNet(width=4)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True,
                          weight_decay=5e-4)
    g = torch.Generator().manual_seed(0)
    batches = [(torch.randn(8, 3, 32, 32, generator=g), torch.randint(0, 10, (8,), generator=g))
               for _ in range(3)]
    model.eval()
    before = _state(model, opt)
    res = lr_range_test(model, opt, F.cross_entropy, batches, start_lr=1e-3, end_lr=0.1,
                        num_iter=6)
    assert res.stop_reason == "completed" and len(res.lrs) == 6
    assert 0 < res.lr_min < res.lr_max <= 0.1 / lr_finder.BACKOFF
    _assert_identical(before, _state(model, opt))
    assert not model.training


def test_a_copy_of_this_file_alone_finds_the_lrs_train_py_finds(tmp_path):
    """A student who copies lr_finder.py and calls it with its defaults on the same model and
    batches gets the LRMAX and LRMIN that train.py's range test gets."""
    import importlib.util
    import shutil
    import data
    import train
    import utils
    shutil.copy(lr_finder.__file__, tmp_path / "copied_lr_finder.py")
    spec = importlib.util.spec_from_file_location("copied_lr_finder", tmp_path / "copied_lr_finder.py")
    copied = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(copied)
    cfg = train.Config.from_keywords(dict(width=4, batch_size=32, precision="fp32", device="cpu"))
    d = data.synthetic_cifar10(32 * 24, 8)
    loader = data.DeviceLoader(d.train_images, d.train_labels, 32, train=True, device="cpu", seed=cfg.seed)
    learner = train.build(cfg, utils.pick_runtime("cpu", "fp32"), len(loader))
    lr_min, lr_max, _, found = train.find_lrs(cfg, learner, loader)
    mine = copied.lr_range_test(learner.model, learner.optimizer, F.cross_entropy, loader.reseeded(cfg.seed + 1))
    assert len(mine.lrs) == len(found["lrs"]) and mine.lrs == pytest.approx(found["lrs"], rel=1e-12)
    assert (mine.lr_max, mine.lr_min) == (lr_max, lr_min) and mine.smoothed == found["smoothed"]
    assert (copied.START_LR, copied.END_LR) == (cfg.lr_test_start, cfg.lr_test_end)


def test_the_default_length_and_smoothing_follow_the_batches():
    assert lr_finder.default_num_iter(list(range(7))) == 20          # at least 20
    assert lr_finder.default_num_iter(list(range(78))) == 78         # an epoch
    assert lr_finder.default_num_iter(list(range(500))) == 100       # at most 100
    assert lr_finder.default_num_iter(b for b in range(3)) == 100    # no length
    assert lr_finder.default_smooth(100) == 0.05 and lr_finder.default_smooth(10) == 0.3


def test_a_flat_range_test_says_so_and_what_to_try():
    """A loss that never moves (the labels shuffled away from the images, a loss that does not
    reach the weights): the pick is a guess, and the note says so and names what to check."""
    lrs = [1e-3 * 10 ** (i / 4) for i in range(20)]
    flat = [2.3026 + 0.001 * ((-1) ** i) for i in range(20)]
    _, _, _, note = lr_finder.pick_lrs(lrs, flat)
    assert note.startswith("the loss stayed flat (within 1% of its start from LR 0.001 to 56.2)")
    assert "check that the labels belong to the images" in note and "give the LRs by hand" in note
    falling = [2.3 - 0.05 * i for i in range(20)]
    assert "flat" not in lr_finder.pick_lrs(lrs, falling)[3]
