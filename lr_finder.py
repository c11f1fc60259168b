"""The learning-rate range test: find LRMAX and LRMIN for a one-cycle schedule.

Imports torch and the standard library only (matplotlib inside `plot_range_test`), so this
file can be copied into coursework on its own.

## What the test is
Train for `num_iter` batches while the LR grows from a tiny `start_lr` to a huge `end_lr`
(exponentially by default), recording the training loss of every batch. The loss is flat
while the LR is too small to matter, falls once the LR is large enough, then turns ragged
and shoots up once the LR is too large for the network to stay stable. The LR at which the
loss stops falling marks the largest LR worth training with. Leslie Smith introduced it in
"Cyclical Learning Rates for Training Neural Networks" (arXiv 1506.01186, section 3.3, a
linear sweep read off the accuracy curve) and made it the way to pick the peak of the
one-cycle policy in "A disciplined approach to neural network hyper-parameters: Part 1"
(arXiv 1803.09820). The model and the optimizer are put back exactly as they were afterwards:
the test only looks.

## Usage
    import torch, torch.nn.functional as F
    from lr_finder import lr_range_test, plot_range_test

    model = ...                           # any classifier that returns logits
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True)
    batches = ...                         # any iterable of (x, y) pairs on the model's device,
                                          # e.g. a DataLoader; it is re-iterated if too short
    result = lr_range_test(model, opt, F.cross_entropy, batches)   # train.py's defaults
    print(result.lr_max, result.lr_min, result.rule, result.note)
    plot_range_test(result, "lr_range_test.png")

## The rule for LRMAX and LRMIN (`pick_lrs`)
    i_min  = first_minimum(smoothed, rise): the lowest smoothed loss before the loss turns up,
             i.e. before it first climbs more than `rise` (5%) above its lowest value so far
             (counted only once it has fallen 5% below its earlier high)
    LRMAX  = lrs[i_min] / backoff          (backoff = 2 by default)
    LRMIN  = LRMAX / min_factor            (min_factor = 20 by default)
Why the FIRST minimum: Smith takes LRMAX where the loss stops falling and turns ragged or
rises. With BatchNorm and weight decay the loss of a long test can fall a second time at huge
LRs (the scale-invariant weights grow, so the effective step shrinks), and the global minimum
then lies far beyond the turn. Later dips are ignored.
Why backoff 2: the first minimum itself lands where training has started to degrade; half of it
lands on the plateau of LRs that train equally well. Why LRMIN = LRMAX / 20: Smith (1803.09820)
suggests a minimum a factor of about 10-20 below the maximum for a single cycle (his CLR paper,
1506.01186, used 3-4 for repeated cycles); with no annihilation the run ends at LRMIN, so the
factor matters. Both were chosen on measurements, given with their data in docs/lr-rule.md.
The smoothed loss is an exponential moving average (`RangeTestResult.smoothed`), so it lags
the raw loss; its first minimum sits where the raw loss has stopped falling.
Warnings land in `note`: a loss that stayed flat means nothing trained (check the data, the
labels, the loss); a minimum at the first point means the loss never fell (lower start_lr); a
minimum at the last point of a completed test means the loss was still falling at end_lr (raise
end_lr).

## How it differs from torch-lr-finder 0.2.2 (github.com/davidtvs/pytorch-lr-finder)
- It stops on the first non-finite loss and never records it. There the divergence test is
  `loss > diverge_th * best_loss`, and a NaN compares False, so a NaN loss does not stop the
  test: it goes on stepping with NaN weights and the smoothed curve stays NaN.
- The suggestion is a factor 2 below the first minimum of the smoothed loss, not the point of
  steepest descent of the plotted curve (which moves with the noise of the curve), and never a
  dip after the loss has turned up.
- Restoring the model and the optimizer is automatic and happens in a `finally`, so also
  after an exception; there it is a separate `reset()` call. Our copies are kept on the CPU
  (its in-memory cache deep-copies the state on the model's device: twice the GPU memory).
"""
import contextlib
import copy
import math
from dataclasses import asdict, dataclass

import torch

MODES = ("exp", "linear")
# The test's defaults, the ones train.py uses: a copy of this file alone finds the same LRs.
START_LR = 1e-3     # first LR of the test
END_LR = 10.0       # last LR (the test usually stops earlier, once the loss diverges)
# The rule's defaults (module docstring): chosen on measurements, docs/lr-rule.md.
BACKOFF = 2.0       # LRMAX = LR at the first minimum / BACKOFF
MIN_FACTOR = 20.0   # LRMIN = LRMAX / MIN_FACTOR
RISE = 0.05         # the smoothed loss "turns up" once it is 5% above its lowest value so far
FLAT = 0.01         # a test whose smoothed loss never leaves a band of 1% of its start learned nothing


# ----------------------------------------------------------------------------- result
@dataclass
class RangeTestResult:
    lrs: list[float]       # LR used by each recorded batch (float)
    losses: list[float]    # raw per-batch training loss (float), all finite
    smoothed: list[float]  # s0 = l0, s_i = smooth * l_i + (1 - smooth) * s_{i-1}
    lr_max: float          # chosen LRMAX (see the module docstring for the rule)
    lr_min: float          # chosen LRMIN
    stop_reason: str       # "completed" | "diverged" | "non-finite loss"
    rule: str              # the rule used, in one line, with its parameters
    note: str              # "" or a warning (e.g. "... raise end_lr")

    def to_dict(self) -> dict:
        """Plain floats, strings and lists: ready for json.dump."""
        return asdict(self)


# ----------------------------------------------------------------------------- the rule
def _check_pick_args(backoff, min_factor, rise):
    if not backoff >= 1:     # written this way so that NaN fails too
        raise ValueError(f"backoff must be >= 1, got {backoff}")
    if not min_factor > 1:
        raise ValueError(f"min_factor must be > 1, got {min_factor}")
    if not rise > 0:
        raise ValueError(f"rise must be > 0, got {rise}")


def first_minimum(smoothed, rise=RISE):
    """Index of the first minimum of the smoothed loss that the loss turns up from.

    The loss "turns up" at the first point more than `rise` (relative) above its lowest value so
    far, once that lowest value lies at least `rise` below the highest value before it (so the
    noise of a flat start, before the loss has fallen at all, is no turn). Returns the index of
    the lowest value before the turn, or of the lowest value of all if the loss never turns up.
    Later dips do not count: see the module docstring (BatchNorm's second descent).
    """
    i_best, best, high_before_best, high = 0, smoothed[0], smoothed[0], smoothed[0]
    for i, s in enumerate(smoothed):
        high = max(high, s)
        if s < best:
            i_best, best, high_before_best = i, s, high
        elif 0 < best <= (1 - rise) * high_before_best and s > (1 + rise) * best:
            break                                   # turned up for real: stop looking
    return i_best


def pick_lrs(lrs, smoothed, *, backoff=BACKOFF, min_factor=MIN_FACTOR, rise=RISE, stop_reason="completed"):
    """LRMAX and LRMIN from a range-test curve: `(lr_max, lr_min, rule, note)`.

    i = first_minimum(smoothed, rise); lr_max = lrs[i] / backoff; lr_min = lr_max / min_factor.
    See the module docstring for why and for the measurements that chose the factors.
    `stop_reason` only words the note when the minimum is the last point ("completed": raise end_lr).
    """
    _check_pick_args(backoff, min_factor, rise)
    lrs, smoothed = [float(v) for v in lrs], [float(v) for v in smoothed]
    if len(lrs) != len(smoothed):
        raise ValueError(f"lrs and smoothed differ in length: {len(lrs)} vs {len(smoothed)}")
    if not lrs:
        raise ValueError("empty curve: no point to pick an LR from")
    if not all(math.isfinite(v) for v in lrs + smoothed) or min(lrs) <= 0:
        raise ValueError("lrs must be finite and > 0, smoothed finite")

    i_min = first_minimum(smoothed, rise)
    lr_max = lrs[i_min] / backoff
    lr_min = lr_max / min_factor
    rule = (f"LRMAX = LR at the minimum of the smoothed loss before it first rises {100 * rise:g}% "
            f"({lrs[i_min]:.3g}) / {backoff:g}; LRMIN = LRMAX / {min_factor:g}")
    last = len(lrs) - 1
    if last > 0 and max(smoothed) - min(smoothed) <= FLAT * abs(smoothed[0]):
        note = (f"the loss stayed flat (within {100 * FLAT:g}% of its start from LR {lrs[0]:.3g} to {lrs[-1]:.3g}): "
                "nothing trained the model, so LRMAX is a guess; check that the labels belong to the images "
                "and that the loss reaches the weights, then raise end_lr or give the LRs by hand")
    elif last == 0:
        note = "only one finite loss was recorded: LRMAX is a guess; lower start_lr"
    elif i_min == 0:
        note = "the loss never fell: lower start_lr"
    elif i_min == last and stop_reason == "completed":
        note = "the loss was still falling at end_lr: raise end_lr"
    elif i_min == last:
        note = (f"the loss turned non-finite right after its lowest point (lr={lrs[last]:.3g}) "
                f"without rising first: check the curve")
    else:
        note = ""
    return lr_max, lr_min, rule, note


# ----------------------------------------------------------------------------- helpers
def _lr_at(i, start_lr, end_lr, num_iter, mode):
    """LR for batch i (0-based): start_lr at batch 0, end_lr (up to rounding) at the last."""
    t = i / (num_iter - 1)
    if mode == "exp":
        # equal steps in log(LR): each decade gets the same number of batches
        return start_lr * (end_lr / start_lr) ** t
    return start_lr + (end_lr - start_lr) * t


def _cycle(batches):
    """Yield from `batches` forever, iterating it again each time it runs out."""
    seen = 0
    while True:
        fresh = 0
        for batch in batches:
            fresh += 1
            seen += 1
            yield batch
        if fresh == 0 and seen == 0:
            raise ValueError("batches yielded no batch at all")
        if fresh == 0:
            raise ValueError(
                f"batches ran out after {seen} batches and yields nothing when iterated again "
                f"(a one-shot generator or iterator?): pass a list or a DataLoader, or lower num_iter")


def _to_cpu(obj):
    """Copy of a nest of dicts/lists/tuples whose tensors are copied to the CPU."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_cpu(v) for v in obj)
    return copy.deepcopy(obj)


def _snapshot(model, optimizer, scaler):
    """Everything the test changes, copied to the CPU so a GPU run needs no second copy there."""
    opt_state = optimizer.state_dict()
    return {
        "model": _to_cpu(model.state_dict()),                 # params AND buffers (BN stats)
        "training": {name: m.training for name, m in model.named_modules()},
        "grads": [None if p.grad is None else p.grad.detach().to("cpu", copy=True)
                  for p in model.parameters()],
        "optimizer": {"state": _to_cpu(opt_state["state"]),   # momentum buffers, Adam moments
                      # hyperparameters are small: copied where they live (a tensor LR stays put)
                      "param_groups": copy.deepcopy(opt_state["param_groups"])},
        "scaler": None if scaler is None else copy.deepcopy(scaler.state_dict()),
    }


@torch.no_grad()
def _restore(model, optimizer, scaler, snap):
    # load_state_dict copies into the existing tensors, so each keeps its device and dtype
    model.load_state_dict(snap["model"])
    # the optimizer's load_state_dict replaces its whole state (buffers created during the
    # test disappear) and moves each state tensor to its parameter's device
    optimizer.load_state_dict(snap["optimizer"])
    for name, m in model.named_modules():
        m.training = snap["training"][name]                   # per module: frozen BNs stay frozen
    for p, g in zip(model.parameters(), snap["grads"]):
        p.grad = None if g is None else g.to(p.device)
    if scaler is not None:
        scaler.load_state_dict(snap["scaler"])


def _check_args(start_lr, end_lr, num_iter, mode, smooth, diverge, autocast):
    if not 0 < start_lr < end_lr:
        raise ValueError(f"need 0 < start_lr < end_lr, got start_lr={start_lr}, end_lr={end_lr}")
    if isinstance(num_iter, bool) or not isinstance(num_iter, int) or num_iter < 2:
        raise ValueError(f"num_iter must be an int >= 2, got {num_iter!r}")
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if not 0 < smooth <= 1:
        raise ValueError(f"smooth must be in (0, 1], got {smooth}")
    if not diverge > 1:
        raise ValueError(f"diverge must be > 1, got {diverge}")
    if autocast is not None and not callable(autocast):
        raise ValueError("autocast must be a context-manager factory (e.g. "
                         "lambda: torch.autocast('cuda', dtype=torch.bfloat16)) or None")


# ----------------------------------------------------------------------------- the test
def default_num_iter(batches) -> int:
    """Steps of a test over `batches` when none are asked for: one pass over them (an epoch),
    at least 20 (a curve to read) and at most 100 (the cost of a test); 100 where `batches` has
    no length."""
    try:
        return min(100, max(20, len(batches)))
    except TypeError:
        return 100


def default_smooth(num_iter) -> float:
    """The EMA weight of the newest loss for a test of num_iter steps: 5 / num_iter (a memory of
    about a fifth of the test), at most 0.3. torch-lr-finder's fixed 0.05 remembers 20 steps,
    which flattens a 20-step test into its first few losses."""
    return min(0.3, 5 / num_iter)


def lr_range_test(model, optimizer, loss_fn, batches, *, start_lr=START_LR, end_lr=END_LR,
                  num_iter=None, mode="exp", smooth=None, diverge=5.0, backoff=BACKOFF,
                  min_factor=MIN_FACTOR, rise=RISE, autocast=None, scaler=None, step_hook=None):
    """Run the LR range test and pick LRMAX and LRMIN by the rule of the module docstring.

    model, optimizer: trained for up to `num_iter` steps, then restored bit for bit (model
                 parameters, buffers, grads and train/eval mode of every module; the
                 optimizer's whole state_dict; the scaler's state), also after an exception.
    loss_fn:     loss_fn(model(x), y) -> scalar tensor (e.g. F.cross_entropy); assumed > 0.
    batches:     iterable of (x, y) already on the model's device; iterated again when it
                 runs out before num_iter (so a list of 10 batches serves 100 steps).
    num_iter:    steps of the test; None: default_num_iter(batches).
    start_lr, end_lr, num_iter, mode: batch i trains with
                 exp:    start_lr * (end_lr / start_lr) ** (i / (num_iter - 1))
                 linear: start_lr + (end_lr - start_lr) * i / (num_iter - 1)
                 for every param group.
    smooth:      EMA weight of the newest loss; None: default_smooth(num_iter).
    diverge:     stop once the smoothed loss exceeds diverge x its best value so far.
    backoff, min_factor, rise: the rule's parameters (see `pick_lrs`).
    autocast:    None, or a factory of a context manager for the forward pass
                 (lambda: torch.autocast("cuda", dtype=torch.bfloat16)).
    scaler:      None, or a torch.amp.GradScaler (for float16 autocast).
    step_hook:   None, or step_hook(i, lr, loss) called after each recorded batch.

    The loss of batch i is measured before its update, i.e. after updates at LRs up to
    lr_{i-1}: a one-step lag (a factor (end_lr / start_lr) ** (1 / (num_iter - 1)) in LR, 1.1
    for 100 steps of the defaults) that the rule's backoff of 2 swamps. Returns a RangeTestResult.
    """
    if num_iter is None:
        num_iter = default_num_iter(batches)
    if smooth is None and isinstance(num_iter, int) and num_iter >= 2:    # else _check_args says why
        smooth = default_smooth(num_iter)
    _check_args(start_lr, end_lr, num_iter, mode, smooth, diverge, autocast)
    _check_pick_args(backoff, min_factor, rise)     # fail before spending the test, not after
    make_ctx = autocast if autocast is not None else contextlib.nullcontext
    lrs, losses, smoothed = [], [], []
    best = math.inf                            # lowest smoothed loss so far
    stop_reason = "completed"

    snap = _snapshot(model, optimizer, scaler)
    try:
        stream = _cycle(batches)
        for i in range(num_iter):
            lr = _lr_at(i, start_lr, end_lr, num_iter, mode)
            for group in optimizer.param_groups:
                if isinstance(group["lr"], torch.Tensor):
                    group["lr"].fill_(lr)      # tensor LRs (capturable/fused) change in place
                else:
                    group["lr"] = lr
            x, y = next(stream)
            model.train()
            optimizer.zero_grad(set_to_none=True)
            with make_ctx():
                loss = loss_fn(model(x), y)
            value = loss.item()                # one host sync per step: the curve needs it
            if not math.isfinite(value):
                # never step with (or record) a NaN/inf loss: that is divergence already
                stop_reason = "non-finite loss"
                break
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
            else:
                loss.backward()
                optimizer.step()

            lrs.append(lr)
            losses.append(value)
            s = value if i == 0 else smooth * value + (1 - smooth) * smoothed[-1]
            smoothed.append(s)
            if step_hook is not None:
                step_hook(i, lr, value)
            best = min(best, s)
            # `best > 0` guards losses that can reach 0 or below, where "5x best" means nothing
            if best > 0 and s > diverge * best:
                stop_reason = "diverged"
                break
    finally:
        _restore(model, optimizer, scaler, snap)

    if not lrs:
        raise RuntimeError(f"the loss was not finite at the very first step with lr={start_lr:g}: "
                           f"lower start_lr or check the data")
    lr_max, lr_min, rule, note = pick_lrs(lrs, smoothed, backoff=backoff, min_factor=min_factor,
                                          rise=rise, stop_reason=stop_reason)
    return RangeTestResult(lrs, losses, smoothed, lr_max, lr_min, stop_reason, rule, note)


# ----------------------------------------------------------------------------- the plot
def plot_range_test(result, path=None, ax=None, title="LR range test"):
    """Loss against LR (log axis), raw and smoothed, with LRMAX and LRMIN marked.

    Draws on `ax` if given, else on a new matplotlib Figure (no pyplot: no global state, no
    GUI backend needed). Saves a PNG to `path` if given. Returns the Figure.
    """
    from matplotlib.figure import Figure   # here, so `import lr_finder` needs only torch

    if ax is None:
        fig = Figure(figsize=(6.4, 4.2))
        ax = fig.add_subplot()
    else:
        fig = ax.figure
    lrs, losses, smoothed = result.lrs, result.losses, result.smoothed
    ax.plot(lrs, losses, color="tab:blue", alpha=0.35, lw=0.8, marker=".", ms=3,
            label="loss per batch")
    ax.plot(lrs, smoothed, color="tab:blue", lw=2.2, label="smoothed loss")
    ax.axvline(result.lr_max, color="tab:red", ls="--", label=f"LRMAX = {result.lr_max:.3g}")
    ax.axvline(result.lr_min, color="tab:green", ls="--", label=f"LRMIN = {result.lr_min:.3g}")
    ax.set_xscale("log")
    ax.set_xlabel("learning rate (log scale)")
    ax.set_ylabel("training loss")
    ax.set_title(title)

    # clip the top so a divergent tail does not squash the interesting part: 1.5x the highest
    # smoothed loss up to its first minimum, or less if no raw loss reaches that high
    i_min = first_minimum(smoothed)
    top = min(max(losses), 1.5 * max(smoothed[: i_min + 1]))
    bottom = min(losses)
    if top > bottom:
        pad = 0.05 * (top - bottom)
        ax.set_ylim(bottom - pad, top + pad)
    ax.legend(loc="best", fontsize="small")
    if path is not None:
        fig.savefig(path, dpi=120, bbox_inches="tight")
    return fig
