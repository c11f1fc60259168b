"""What a run keeps on disk so that nothing is lost: its record, its checkpoint, its weights.

metrics.json (the record), checkpoint.pt and model.pt are each written whole or not at all, and
read back only as tensors.

    with checkpoint.Run(out_dir, about, ckpt) as run:     # the record of a new or resumed run
        ...                                                # every epoch: run.end_epoch(...)
        run.finish(weights, final_accuracy)               # model.pt; status "complete"

A run stopped by Ctrl-C, or diverged, leaves its last checkpoint and a metrics.json that says so,
and the message says how to go on (`Run.__exit__`).
"""
import os

import torch

import utils
from utils import Diverged, Interrupted, UsageError

FORMAT = "custom-resnet-cifar10 checkpoint v1"
STATE = ("epoch", "step", "history", "lr_min", "lr_max", "lr_source", "lr_range_test")   # a run's counters


# ----------------------------------------------------------------------------------------------
# Reading files back

def read_checkpoint(path) -> dict:
    """The checkpoint.pt at `path` (tensors and plain containers only: torch.load with
    weights_only=True, so nothing in it can run code); UsageError when it is not one."""
    ckpt = utils.load_torch_file(path, f"--resume {path}", "checkpoint",
                                 "give the checkpoint.pt of an earlier run")
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise UsageError(f"--resume {path}: not a checkpoint of this trainer (expected a "
                         f"checkpoint.pt written by train.py). To load bare weights, use model.pt.")
    return ckpt


def read_weights(path, use) -> dict:
    """The state_dict in a model.pt (weights_only=True); UsageError saying `use` (what to give
    instead) when it is a checkpoint or not a dict of tensors."""
    state = utils.load_torch_file(path, path, "weights file", use)
    if isinstance(state, dict) and state.get("format") == FORMAT:
        beside = os.path.join(os.path.dirname(path), "model.pt")
        raise UsageError(f"{path} is a training checkpoint (for python train.py --resume); give the "
                         f"weights written beside it: {beside}")
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UsageError(f"{path}: not a state_dict of weights; {use}")
    return state


def restore(ckpt, learner, loader, path):
    """Continue where the checkpoint stopped: its weights, optimizer, weight average and grad
    scaler into `learner` (its load_state_dict), the random state the run draws from, and the
    training loader's pass counter. UsageError naming the width when the weights do not fit."""
    try:
        learner.load_state_dict(ckpt)
    except (RuntimeError, ValueError, KeyError, TypeError) as e:
        raise UsageError(f"--resume {path}: the weights do not fit CustomResNet(width="
                         f"{ckpt['config'].get('width')}) ({str(e).splitlines()[0][:200]}).") from None
    # The CPU generator is the only one a run draws from (DeviceLoader draws on the CPU too).
    torch.set_rng_state(ckpt["rng"]["torch"])
    loader.epoch = ckpt["loader_epoch"]


# ----------------------------------------------------------------------------------------------
# A run's record and files

class Run:
    """The record of one run (what metrics.json holds) and the files of its folder.

    about: the record's fixed part ({"config", "runtime", "code", "data"}); ckpt: the checkpoint
    a resumed run continues from, or None. The counters `epoch` and `step` and the record's
    history, LRs and range test continue from the checkpoint's.
    """

    def __init__(self, out_dir, about: dict, ckpt=None, resume_path=None):
        self.out_dir = out_dir
        self.paths = {k: os.path.join(out_dir, k) for k in ("metrics.json", "checkpoint.pt", "model.pt")}
        self.record = {"status": "running", **about, "history": [], "timings": {}}
        self.epoch, self.step = 0, 0
        self.saved = (0, None)                        # the last checkpoint on disk: (epoch, path)
        if ckpt is not None:
            self.epoch, self.step = ckpt["epoch"], ckpt["step"]
            self.record.update({k: ckpt[k] for k in STATE[2:]})
            self.saved = (ckpt["epoch"], resume_path)

    def __enter__(self):
        return self

    def __exit__(self, kind, error, traceback):
        """Ctrl-C anywhere in the run: metrics.json keeps what the checkpoint holds, marked
        "interrupted", and one line says how to resume. A CUDA out-of-memory error names a
        smaller batch."""
        if kind is not None and issubclass(kind, KeyboardInterrupt):
            self._stop("interrupted")
            raise Interrupted(f"interrupted; {self.where_to_resume()}") from None
        if kind is not None and issubclass(kind, torch.cuda.OutOfMemoryError):
            batch = self.record["config"]["batch_size"]
            raise UsageError(f"out of memory on {self.record['runtime']['device']} at batch size {batch}: try "
                             f"--batch-size {max(1, batch // 2)} (or a smaller --eval-batch-size if it "
                             "failed while evaluating)") from None
        return False

    # ----- the LRs and the schedule ----------------------------------------------------------
    def set_lrs(self, lr_min, lr_max, source, range_test):
        """LRMIN and LRMAX as given or found (range_test: the RangeTestResult's dict, or None)."""
        self.record.update(lr_min=lr_min, lr_max=lr_max, lr_source=source, lr_range_test=range_test)

    @property
    def lr_min(self):
        return self.record["lr_min"]

    @property
    def lr_max(self):
        return self.record["lr_max"]

    # ----- every epoch -----------------------------------------------------------------------
    def end_epoch(self, entry, learner, loader):
        """Epoch `entry["epoch"]` is done: its line goes into the history, then the checkpoint
        (the learner's state_dict, the random state, the training loader's pass counter, the
        config and the run's counters) and metrics.json are written, in that order."""
        steps_per_epoch = len(loader)
        self.epoch, self.step = entry["epoch"], self.step + steps_per_epoch
        self.record["history"].append(entry)
        h = self.record["history"]
        train_s = sum(e["train_seconds"] for e in h)
        images = len(h) * steps_per_epoch * self.record["config"]["batch_size"]
        self.record["timings"].update(train_seconds=train_s, eval_seconds=sum(e["eval_seconds"] for e in h),
                                      images_per_second=images / train_s if train_s else None)
        payload = {"format": FORMAT, **learner.state_dict(),
                   # The CPU generator is the only one a run draws from (DeviceLoader's draws too).
                   "rng": {"torch": torch.get_rng_state()}, "loader_epoch": loader.epoch,
                   "config": self.record["config"],
                   "epoch": self.epoch, "step": self.step, **{k: self.record[k] for k in STATE[2:]}}
        utils.atomic_torch_save(payload, self.paths["checkpoint.pt"])
        self.saved = (self.epoch, self.paths["checkpoint.pt"])
        self.write()

    def diverged(self, what) -> Diverged:
        """The run's end when the loss or the weights became non-finite: metrics.json says
        "diverged" and keeps the epochs the checkpoint holds. Returns the error to raise."""
        self._stop("diverged")
        epoch, path = self.saved
        kept = f"the last good checkpoint (epoch {epoch}) is {path}" if epoch else "no checkpoint was written"
        return Diverged(f"{what}; training stopped and {kept}. Lower --lr-max (or --lr-min), or check the data.")

    # ----- the end ---------------------------------------------------------------------------
    def finish(self, weights, total_seconds=None):
        """The run is complete: its weights (a state_dict, copied to the CPU so that weights
        trained on a GPU load on a laptop) to model.pt, the final accuracy into the record."""
        final = self.record["history"][-1]
        self.record.update(status="complete", test_accuracy=final["test_acc"], test_correct=final["test_correct"])
        utils.atomic_torch_save({k: v.detach().cpu() for k, v in weights.items()}, self.paths["model.pt"])

    def write(self):
        utils.atomic_write_json(self.record, self.paths["metrics.json"])

    def where_to_resume(self) -> str:
        epoch, path = self.saved
        if not epoch:
            return "no epoch had finished, so there is nothing to resume; start again"
        return (f"the last complete checkpoint (epoch {epoch}) is {path}; continue with: "
                f"python train.py --resume {path}")

    def _stop(self, status):
        self.record["status"] = status
        self.record["history"] = self.record["history"][:self.saved[0]]      # only what the checkpoint holds
        self.write()
