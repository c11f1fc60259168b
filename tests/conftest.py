import os
import sys

import pytest

# The modules live at the repository root (flat layout): make them importable from tests/.
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)


@pytest.fixture
def one_cpu_thread():
    """One intra-op thread: at these sizes a second one only waits, and on a machine whose cores
    are busy with other work two threads run many times slower than one."""
    import torch
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def interrupt_in_epoch(monkeypatch):
    """interrupt_in_epoch(n): train.train_one_epoch finishes epoch n (so the weights in memory
    move on), then raises KeyboardInterrupt as Ctrl-C would, before that epoch is checkpointed.
    monkeypatch.undo() disarms it."""
    import train

    def arm(epoch):
        original, calls = train.train_one_epoch, []

        def wrapped(*args, **kwargs):
            calls.append(1)
            result = original(*args, **kwargs)
            if len(calls) == epoch:
                raise KeyboardInterrupt
            return result
        monkeypatch.setattr(train, "train_one_epoch", wrapped)
    return arm


@pytest.fixture
def interrupt_at_step(monkeypatch):
    """interrupt_at_step(k): the k-th training step of the run (0-based, counted over epochs)
    raises KeyboardInterrupt, as Ctrl-C would, before it changes anything: train.train_step is
    the seam. monkeypatch.undo() disarms it."""
    import train

    def arm(step):
        original, calls = train.train_step, []

        def wrapped(*args, **kwargs):
            calls.append(1)
            if len(calls) == step + 1:
                raise KeyboardInterrupt
            return original(*args, **kwargs)
        monkeypatch.setattr(train, "train_step", wrapped)
    return arm
