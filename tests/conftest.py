import contextlib
import os
import sys

import pytest
import torch
from torch import nn
from torch.optim.optimizer import register_optimizer_step_post_hook, register_optimizer_step_pre_hook

# The modules live at the repository root (flat layout): make them importable from tests/.
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from custom_resnet import CustomResNet  # noqa: E402  (after the path above)


@pytest.fixture
def one_cpu_thread():
    """One intra-op thread: at these sizes a second one only waits, and on a machine whose cores
    are busy with other work two threads run many times slower than one."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ----------------------------------------------------------------------------------------------
# Watching a run through PyTorch's own global hooks: no function of the trainer is replaced, so
# these tests see what any run does, and survive any restructuring of train.py.

class Watch:
    """What a run did, recorded by torch's global hooks while the `with` block runs.

    forwards: one dict per forward pass of a CustomResNet: phase ("train" in training mode with
      autograd on: a range-test or training step; "eval" under inference_mode: an evaluation;
      "explain" in eval mode with autograd: Grad-CAM), the input batch, the module.
    losses: one dict per nn.CrossEntropyLoss call: logits, targets, loss, label_smoothing.
    steps: one dict per optimizer step, taken before it: the optimizer, each group's LR.
    after_step: callbacks f(optimizer) run after every optimizer step.
    on_forward: callbacks f(phase, count, module, output) -> None or a replacement output, run
      after every CustomResNet forward; count is the number of forwards of that phase so far.
    """

    def __init__(self, keep_inputs=True):
        self.forwards, self.losses, self.steps = [], [], []
        self.after_step, self.on_forward, self.keep_inputs = [], [], keep_inputs

    def phase_of(self, module):
        if torch.is_inference_mode_enabled():
            return "eval"
        return "train" if module.training else "explain"

    def _forward(self, module, inputs, output):
        if isinstance(module, CustomResNet):
            phase = self.phase_of(module)
            self.forwards.append({"phase": phase, "training": module.training, "module": module,
                                  "x": inputs[0].detach().clone() if self.keep_inputs else None,
                                  "n": len(inputs[0])})
            count = sum(f["phase"] == phase for f in self.forwards)
            for callback in self.on_forward:
                replaced = callback(phase, count, module, output)
                if replaced is not None:
                    output = replaced
            return output
        if isinstance(module, nn.CrossEntropyLoss):
            self.losses.append({"logits": inputs[0].detach().clone(), "y": inputs[1].detach().clone(),
                                "loss": output.detach().clone(), "label_smoothing": module.label_smoothing})
        return None

    def _step(self, optimizer, args, kwargs):
        self.steps.append({"optimizer": optimizer, "lrs": [float(g["lr"]) for g in optimizer.param_groups]})

    def _after(self, optimizer, args, kwargs):
        for callback in self.after_step:
            callback(optimizer)

    def __enter__(self):
        self.handles = [nn.modules.module.register_module_forward_hook(self._forward),
                        register_optimizer_step_pre_hook(self._step),
                        register_optimizer_step_post_hook(self._after)]
        return self

    def __exit__(self, *exc):
        for h in self.handles:
            h.remove()
        return False

    def of(self, phase):
        return [f for f in self.forwards if f["phase"] == phase]


@pytest.fixture
def watch():
    """A Watch, removed at the end of the test; `with watch:` or watch.__enter__() to start."""
    w = Watch()
    yield w
    if hasattr(w, "handles"):
        w.__exit__(None, None, None)


@contextlib.contextmanager
def acting_at(phase, count, action):
    """Call action() at the `count`-th forward of `phase` ("train": a training or range-test step,
    before its update; "eval": an evaluation batch, so the epoch's training is done and its
    checkpoint not yet written)."""
    def hook(module, inputs, output):
        if isinstance(module, CustomResNet):
            phase_now = "eval" if torch.is_inference_mode_enabled() else "train" if module.training else "explain"
            if phase_now == phase:
                seen[0] += 1
                if seen[0] == count:
                    action()
    seen = [0]
    handle = nn.modules.module.register_module_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


def interrupted_at(phase, count, error=KeyboardInterrupt):
    """Raise `error` (Ctrl-C by default) at the `count`-th forward of `phase` (see acting_at)."""
    def stop():
        raise error() if isinstance(error, type) else error
    return acting_at(phase, count, stop)


@pytest.fixture
def interrupt_in_epoch():
    """interrupt_in_epoch(n, eval_batches=1): Ctrl-C at the first evaluation batch of epoch n
    (so epoch n has trained and is not checkpointed). Use as a context manager."""
    def arm(epoch, eval_batches_per_epoch=1):
        return interrupted_at("eval", (epoch - 1) * eval_batches_per_epoch + 1)
    return arm


@pytest.fixture
def interrupt_at_step():
    """interrupt_at_step(k): Ctrl-C in the k-th training forward of the run (0-based, counted
    over epochs; no range test in these runs), before that step changes anything."""
    def arm(step):
        return interrupted_at("train", step + 1)
    return arm


def cli_flags(overrides) -> list:
    """train.py's command line for keyword overrides: {"epochs": 2, "plots": False} ->
    ["--epochs", "2", "--no-plots"]."""
    out = []
    for k, v in overrides.items():
        flag = "--" + k.replace("_", "-")
        out += ([flag] if v else ["--no-" + k.replace("_", "-")]) if isinstance(v, bool) else [flag, str(v)]
    return out
