"""What a run keeps on disk so that nothing is lost: its record, its checkpoint, its weights.

metrics.json (the record), checkpoint.pt and model.pt are each written whole or not at all; a
checkpoint is read back verified (weights.py: the archive's checksums, tensors only, every value
finite) and then every entry, its type and its counters.

    with checkpoint.Run(cfg, ckpt) as run:      # claims cfg.out_dir for this run alone
        ...                                     # every epoch: run.end_epoch(...)
        run.finish(weights)                     # model.pt; status "complete"

A run that stops early (Ctrl-C, SIGTERM, divergence, a write that fails) leaves its last checkpoint
whole, a metrics.json that says why, and one line that says how to go on (`Run.__exit__`).
"""
import collections
import dataclasses
import errno
import glob
import json
import math
import os
import signal
import stat
import threading

import torch

import lr_finder
import utils
from custom_resnet import CLASSES
from utils import Diverged, Interrupted, Terminated, UsageError, WriteFailed
from weights import FORMAT, first_non_finite, is_count, is_number, read_torch_file, with_provenance

try:
    import fcntl                     # POSIX: the folder lock; Windows runs without one
except ImportError:
    fcntl = None

STATE = ("epoch", "step", "history", "lr_min", "lr_max", "lr_source", "lr_range_test")   # a run's counters
# A checkpoint's entries and their types ("average" is absent from checkpoints made before
# --ema-epochs existed: it then means None).
ENTRIES = {"model": dict, "optimizer": dict, "scaler": dict, "rng": dict, "loader_epoch": int, "config": dict,
           "epoch": int, "step": int, "history": list, "lr_min": (int, float), "lr_max": (int, float),
           "lr_source": str, "lr_range_test": (dict, type(None)), "average": (dict, type(None))}
HISTORY = ("epoch", "lr", "train_loss", "train_acc", "test_loss", "test_acc", "test_correct", "test_n",
           "train_seconds", "eval_seconds")                    # the numbers of every epoch's history entry
RUN_FILES = ("metrics.json", "checkpoint.pt", "model.pt", "images.pt", "README.md", "curves.png",
             "lr_range_test.png", "lr_schedule.png", "confusion.png", "misclassified.png", "gradcam.png")
LOCK = ".run.lock"


# ----------------------------------------------------------------------------------------------
# Reading a checkpoint back, verified

def read_checkpoint(path, label=None, advice="give the checkpoint.pt of an earlier run") -> dict:
    """The checkpoint.pt at `path`, verified: its archive's checksums, then (torch.load with
    weights_only=True, so nothing in it can run code) its format, every entry and its type, every
    weight, statistic and momentum finite, and counters that agree. UsageError "<label>: what is
    wrong; <advice>" (label: "--resume <path>" by default)."""
    label = label or f"--resume {path}"
    ckpt = read_torch_file(path, "checkpoint", advice, label)
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise UsageError(f"{label}: not a checkpoint of this trainer (expected a "
                         f"checkpoint.pt written by train.py). To load bare weights, use model.pt.")
    for key, kind in ENTRIES.items():
        if key == "average" and key not in ckpt:
            continue
        if key not in ckpt:
            raise UsageError(f"{label}: a malformed checkpoint (no entry {key!r}); {advice}")
        if not isinstance(ckpt[key], kind) or (kind is int and isinstance(ckpt[key], bool)):
            raise UsageError(f"{label}: a malformed checkpoint ({key!r} is a {type(ckpt[key]).__name__}); {advice}")
    rng = ckpt["rng"].get("torch")
    if (not isinstance(rng, torch.Tensor) or rng.dtype != torch.uint8 or rng.numel() != torch.get_rng_state().numel()
            or not isinstance(ckpt["optimizer"].get("state"), dict)):
        raise UsageError(f"{label}: a malformed checkpoint (its random state or optimizer state is not one); {advice}")
    lr_min, lr_max = ckpt["lr_min"], ckpt["lr_max"]
    if not (math.isfinite(lr_min) and math.isfinite(lr_max) and 0 < lr_min <= lr_max):
        raise UsageError(f"{label}: a malformed checkpoint (LRMIN {lr_min}, LRMAX {lr_max}: not 0 < LRMIN <= LRMAX); "
                         f"{advice}")
    for entry in ckpt["history"]:
        if not _epoch_ok(entry):
            raise UsageError(f"{label}: a malformed checkpoint (a history entry without the numbers of an epoch: "
                             f"{', '.join(HISTORY)}); {advice}")
    found = ckpt["lr_range_test"]
    if found is not None and set(found) != {f.name for f in dataclasses.fields(lr_finder.RangeTestResult)}:
        raise UsageError(f"{label}: a malformed checkpoint (its range test is not one); {advice}")
    bad = first_non_finite({"model": ckpt["model"], "average": ckpt.get("average") or {},
                            "optimizer": ckpt["optimizer"]["state"]})
    if bad:
        raise UsageError(f"{label}: the checkpoint holds non-finite values ({bad} has NaN or inf), so it cannot "
                         "be resumed; resume from an earlier copy, or start again with lower LRs")
    epochs = [h.get("epoch") if isinstance(h, dict) else None for h in ckpt["history"]]
    if epochs != list(range(1, ckpt["epoch"] + 1)) or ckpt["loader_epoch"] != ckpt["epoch"]:
        raise UsageError(f"{label}: its counters disagree (epoch {ckpt['epoch']}, {len(epochs)} epochs of history, "
                         f"loader pass {ckpt['loader_epoch']}): an altered checkpoint; {advice}")
    return ckpt


def _epoch_ok(entry) -> bool:
    """A history entry with the numbers of an epoch (HISTORY), every one finite."""
    return isinstance(entry, dict) and all(is_number(entry.get(k)) for k in HISTORY)


def restore(ckpt, learner, loader, path):
    """Continue where the checkpoint stopped: its weights, optimizer, weight average and grad
    scaler into `learner` (its load_state_dict), the random state the run draws from, and the
    training loader's pass counter. UsageError when they do not fit this run."""
    if ckpt["step"] != ckpt["epoch"] * len(loader):
        raise UsageError(f"--resume {path}: its step counter ({ckpt['step']}) is not its epoch ({ckpt['epoch']}) "
                         f"times the {len(loader)} steps of an epoch: an altered checkpoint, or other data")
    try:
        learner.load_state_dict({**ckpt, "average": ckpt.get("average")})
    except (RuntimeError, ValueError, KeyError, TypeError) as e:
        raise UsageError(f"--resume {path}: the weights do not fit CustomResNet(width="
                         f"{ckpt['config'].get('width')}) ({str(e).splitlines()[0][:200]}).") from None
    # The CPU generator is the only one a run draws from (DeviceLoader draws on the CPU too).
    torch.set_rng_state(ckpt["rng"]["torch"])
    loader.epoch = ckpt["loader_epoch"]


# ----------------------------------------------------------------------------------------------
# Reading a run's record (metrics.json) back, checked

STATUSES = ("running", "complete", "interrupted", "failed", "diverged")


def record_problem(record) -> str:
    """What is wrong with a run's record (metrics.json), in words naming the field, or "" when
    every field its readers use has its type and range: status, config (with the width),
    history, data, runtime, timings, code, the LRs, and a complete run's accuracy (its last
    epoch's). For a record read back from a file, before any field of it is used."""
    if not isinstance(record, dict):
        return f"a JSON {type(record).__name__}, not an object"
    complete = record.get("status") == "complete"
    last = {}

    def history_ok(h):
        nonlocal last
        last = h[-1] if isinstance(h, list) and h and isinstance(h[-1], dict) else {}
        return (isinstance(h, list) and all(_epoch_ok(e) for e in h) and (h or not complete)
                and [e["epoch"] for e in h] == list(range(1, len(h) + 1)))
    fields = [
        ("status", lambda v: v in STATUSES, "one of " + ", ".join(STATUSES)),
        ("config", lambda v: isinstance(v, dict) and is_count(v.get("width"), 1), "the run's settings, with its width"),
        ("history", history_ok, "a list of epochs 1, 2, ..., each with the numbers " + ", ".join(HISTORY)),
        ("data", lambda v: (v is None and not complete) or isinstance(v, dict)
         and v.get("source") in ("cifar10", "synthetic") and is_count(v.get("train_images"))
         and is_count(v.get("test_images"), 1) and v.get("eval_split", "test") in ("test", "validation"),
         "its data: source cifar10 or synthetic, train_images, test_images, eval_split test or validation"),
        ("runtime", lambda v: (v is None and not complete) or isinstance(v, dict)
         and all(isinstance(v.get(k), str) for k in ("device", "precision", "torch"))
         and (isinstance(v.get("gpu"), str) or isinstance(v.get("cpu"), str) and is_count(v.get("cpu_threads"), 1)),
         "its device, precision, torch, and GPU or CPU"),
        ("timings", lambda v: v is None or isinstance(v, dict) and all(t is None or is_number(t, 0) for t in v.values()),
         "seconds, each a number >= 0"),
        ("code", lambda v: v is None or isinstance(v, dict) and isinstance(v.get("git_commit"), (str, type(None))),
         "its git commit")]
    if complete or "lr_max" in record:
        fields += [("lr_min", lambda v: is_number(v) and v > 0, "a number > 0"),
                   ("lr_max", lambda v: is_number(v) and v >= record["lr_min"], "a number >= lr_min"),
                   ("lr_source", lambda v: isinstance(v, str), "a text")]
    if complete:
        fields += [("test_accuracy", lambda v: is_number(v, 0, 100) and v == last["test_acc"],
                    "its last epoch's test_acc (a percentage)"),
                   ("test_correct", lambda v: is_count(v) and v == last["test_correct"], "its last epoch's test_correct"),
                   ("parameters", lambda v: is_count(v, 1), "the model's count of parameters")]
    for name, ok, want in fields:
        if not ok(record.get(name)):
            found = f"is {json.dumps(record[name])[:60]}" if name in record else "is missing"
            return f"its {name!r} {found}, not {want}"
    return ""


def read_record(path, advice) -> dict:
    """The record of a run at `path` (its metrics.json), checked by record_problem; UsageError
    "<path>: what is wrong; <advice>" otherwise (FileNotFoundError when there is none)."""
    try:
        with open(path) as f:
            record = json.load(f)
    except FileNotFoundError:
        raise
    except (OSError, ValueError) as e:
        raise UsageError(f"{path}: not a readable record of a run ({utils.first_line(e)}); {advice}") from None
    problem = record_problem(record)
    if problem:
        raise UsageError(f"{path}: not a record of a run as train.py writes it ({problem}); {advice}")
    return record


# ----------------------------------------------------------------------------------------------
# The folder of a run: one run at a time, never another's files overwritten

def holds_run(out_dir) -> str:
    """What run the folder holds, in words ("" for none): a checkpoint, weights, or a record with
    at least one epoch. A record of a run that finished no epoch holds nothing to lose; one that
    cannot be read, or not as train.py writes it, is kept too (a hand-edited record is someone's)."""
    path, record = os.path.join(out_dir, "metrics.json"), None
    try:
        with open(path) as f:
            record = json.load(f)
    except (OSError, ValueError):
        record = "unreadable" if os.path.lexists(path) else None
    files = [f for f in ("checkpoint.pt", "model.pt") if os.path.isfile(os.path.join(out_dir, f))]
    # A series' runs: <out_dir>/seed-<s>/, or <out_dir>/<point>/seed-<s>/ for a sweep.
    seeds = sorted(glob.glob(os.path.join(glob.escape(out_dir), "seed-*", "")) +
                   glob.glob(os.path.join(glob.escape(out_dir), "*", "seed-*", "")))
    if os.path.exists(os.path.join(out_dir, "summary.json")) or any(
            os.path.exists(os.path.join(f, "metrics.json")) for f in seeds):
        return f"a series of runs ({len(seeds)} run folders seed-<s>)"
    problem = record_problem(record) if record is not None else ""
    if problem:
        why = "not JSON" if record == "unreadable" else problem
        return f"a run's {' and '.join(files)}" if files else f"a metrics.json that is not a run's record ({why})"
    record = record or {}
    history = record.get("history", [])
    if not files and not history:
        return ""
    status = record.get("status", "unknown")
    if status == "complete":
        data = record["data"]
        split = ("synthetic " if data["source"] == "synthetic" else "") + data.get("eval_split", "test")
        return f"a complete run: {record['test_accuracy']:.2f}% {split} accuracy after {len(history)} epochs"
    return f"a run that is {status} after epoch {len(history)}" if history else f"a run's {' and '.join(files)}"


class _FolderLock:
    """An exclusive lock on out_dir/.run.lock (fcntl.flock, released by the system if the process
    dies), holding the owner's process id; removed when the run ends. Where fcntl is missing
    (Windows) or the file system refuses locks, the run goes on without one."""

    def __init__(self, out_dir):
        self.path, self.file = os.path.join(out_dir, LOCK), None

    def acquire(self):
        if fcntl is None:
            return
        for _ in range(3):           # the lock file may be removed by its owner between open and flock
            try:
                # O_NOFOLLOW: a link put there would have the run write its process id into another file.
                f = os.fdopen(os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644), "r+")
            except OSError as e:
                if e.errno not in (errno.EISDIR, errno.ELOOP, errno.ENXIO):
                    raise UsageError(f"cannot create the lock file {self.path} ({e.strerror}): give this run another "
                                     "--out-dir") from None
                f = None
            if f is None or not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                kind = ("a folder" if os.path.isdir(self.path) and not os.path.islink(self.path) else
                        "a link" if os.path.islink(self.path) else "not a regular file")
                if f is not None:
                    f.close()
                raise UsageError(f"{self.path} is {kind}, where a run keeps its lock file: nothing was changed; "
                                 "move it away, or give this run another --out-dir")
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as e:
                owner = f.read(32).strip() or "unknown"
                f.close()
                if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise UsageError(f"another run is writing to {os.path.dirname(self.path)} (process {owner}): wait "
                                     "for it to end, or give this one another --out-dir") from None
                return                                   # no locks on this file system
            try:
                same = os.fstat(f.fileno()).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:                                     # the file we locked is still the lock file
                f.seek(0)
                f.truncate()
                f.write(str(os.getpid()))
                f.flush()
                self.file = f
                return
            f.close()

    def release(self):
        if self.file is not None:
            try:
                os.remove(self.path)         # removed while locked: a run that opened it sees it is gone
            except OSError:
                pass
            fcntl.flock(self.file, fcntl.LOCK_UN)
            self.file.close()
            self.file = None


class _SigTerm(KeyboardInterrupt):
    """SIGTERM (a notebook's interrupt, a job scheduler's stop), raised as Ctrl-C's exception is."""


# ----------------------------------------------------------------------------------------------
# A run's record and files

class Run:
    """The record of one run (what metrics.json holds) and the files of its folder.

    cfg: the run's train.Config; ckpt: the checkpoint a resumed run continues from, or None. The
    counters `epoch` and `step` and the record's history, LRs and range test continue from the
    checkpoint's. Entering claims cfg.out_dir: it is locked for this run, and a folder holding
    another run is refused unless cfg.overwrite (then that run's files are removed).
    """

    def __init__(self, cfg, ckpt=None):
        self.cfg, self.out_dir = cfg, cfg.out_dir
        self.paths = {k: os.path.join(self.out_dir, k) for k in ("metrics.json", "checkpoint.pt", "model.pt")}
        self.record = {"status": "running", "config": dataclasses.asdict(cfg), "runtime": None,
                       "code": utils.code_version(), "data": None, "history": [], "timings": {}}
        self.epoch, self.step, self.ckpt = 0, 0, ckpt
        self.saved = (0, None)                        # the last checkpoint on disk: (epoch, path)
        if ckpt is not None:
            self.epoch, self.step = ckpt["epoch"], ckpt["step"]
            self.record.update({k: ckpt[k] for k in STATE[2:]})
            self.saved = (ckpt["epoch"], cfg.resume)
            self._add_up_timings()
        self._lock, self._sigterm, self._replaced = _FolderLock(self.out_dir), None, ""

    def __enter__(self):
        utils.ensure_writable_dir(self.out_dir)
        self._lock.acquire()
        try:
            self._claim()
        except BaseException:
            self._lock.release()
            raise
        if threading.current_thread() is threading.main_thread():     # signal handlers live there
            self._sigterm = signal.signal(signal.SIGTERM, self._on_sigterm)
        return self

    @staticmethod
    def _on_sigterm(signum, frame):
        raise _SigTerm()

    def _claim(self):
        """A new run (or a resumed one written elsewhere) never lands on another run's files: it
        is refused, or, with --overwrite, those files are removed when the run begins (so a run
        refused for its settings or its data changes nothing)."""
        resumed_here = self.ckpt is not None and os.path.samefile(os.path.dirname(os.path.abspath(self.cfg.resume)),
                                                                  self.out_dir)
        in_the_way = [n for n in RUN_FILES if os.path.lexists(os.path.join(self.out_dir, n))
                      and not os.path.isfile(os.path.join(self.out_dir, n))]
        if in_the_way:                                      # a folder named model.pt, a broken link
            raise UsageError(f"{os.path.join(self.out_dir, in_the_way[0])} is not a file, where the run writes its "
                             f"{in_the_way[0]}. Nothing was changed: move it away, or give this run another --out-dir")
        held = "" if resumed_here else holds_run(self.out_dir)
        if held and not self.cfg.overwrite:
            go_on = ("" if held.startswith("a complete") or held.startswith("a series")
                     or not os.path.isfile(self.paths["checkpoint.pt"]) else
                     f"to continue it, --resume {self.paths['checkpoint.pt']}; ")
            raise UsageError(f"{self.out_dir} already holds {held}. Nothing was changed: {go_on}to keep it, give this "
                             "run another --out-dir; to replace it, add --overwrite (overwrite=True)")
        self._replaced = held

    def begin(self, runtime, data):
        """The settings, device and data are good: the run begins. The record gets its
        description of the hardware and the data; an --overwrite removes the earlier run's files now."""
        if self._replaced:
            for name in RUN_FILES:
                path = os.path.join(self.out_dir, name)
                if os.path.exists(path):
                    os.remove(path)
            print(f"--overwrite: removed {self._replaced} from {self.out_dir}")
        self.record.update(runtime=runtime, data=data)

    def __exit__(self, kind, error, traceback):
        """A run that stops early says so in metrics.json and in one line: Ctrl-C and SIGTERM
        (metrics.json "interrupted"), a failed write ("failed"), a CUDA out-of-memory error."""
        if self._sigterm is not None:
            signal.signal(signal.SIGTERM, self._sigterm)
        self._lock.release()
        if kind is None:
            return False
        if issubclass(kind, KeyboardInterrupt):
            self._stop("interrupted")
            stop = Terminated if issubclass(kind, _SigTerm) else Interrupted
            raise stop(f"interrupted; {self.where_to_resume()}") from None
        if issubclass(kind, torch.cuda.OutOfMemoryError):
            batch = self.cfg.batch_size
            raise UsageError(f"out of memory on {(self.record['runtime'] or {}).get('device')} at batch size {batch}: "
                             f"try --batch-size {max(1, batch // 2)} (or a smaller --eval-batch-size if it failed "
                             "while evaluating)") from None
        if issubclass(kind, OSError):
            what = f"could not write {error.filename or self.out_dir} ({error.strerror or utils.first_line(error)})"
            self.record["failure"] = what
            self._stop("failed")
            raise WriteFailed(f"{what}; {self.where_to_resume(kept='intact')}") from None
        return False

    # ----- the LRs ----------------------------------------------------------------------------
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
        self._add_up_timings()
        payload = {"format": FORMAT, **learner.state_dict(),
                   # The CPU generator is the only one a run draws from (DeviceLoader's draws too).
                   "rng": {"torch": torch.get_rng_state()}, "loader_epoch": loader.epoch,
                   "config": self.record["config"],
                   "epoch": self.epoch, "step": self.step, **{k: self.record[k] for k in STATE[2:]}}
        utils.atomic_torch_save(payload, self.paths["checkpoint.pt"])
        self.saved = (self.epoch, self.paths["checkpoint.pt"])
        self.write()

    def _add_up_timings(self):
        """The record's training and evaluation seconds: the sums of its epochs'."""
        h = self.record["history"]
        train_s = sum(e["train_seconds"] for e in h)
        images = self.step * self.record["config"]["batch_size"]
        self.record["timings"].update(train_seconds=train_s, eval_seconds=sum(e["eval_seconds"] for e in h),
                                      images_per_second=images / train_s if train_s else None)

    def diverged(self, what) -> Diverged:
        """The run's end when the loss or the weights became non-finite: metrics.json says
        "diverged" and keeps the epochs the checkpoint holds. Returns the error to raise."""
        self._stop("diverged")
        epoch, path = self.saved
        kept = (f"the last good checkpoint (epoch {epoch}) is {path}" if epoch and os.path.isfile(path) else
                f"the last good checkpoint (epoch {epoch}, {path}) no longer exists" if epoch else
                "no checkpoint was written")
        return Diverged(f"{what}; training stopped and {kept}. Lower --lr-max (or --lr-min), or check the data.")

    # ----- the end ---------------------------------------------------------------------------
    def finish(self, weights):
        """The run is complete: its weights (a state_dict, copied to the CPU so that weights
        trained on a GPU load on a laptop) to model.pt with their provenance (weights.py), the
        final accuracy into the record."""
        final = self.record["history"][-1]
        self.record.update(status="complete", test_accuracy=final["test_acc"], test_correct=final["test_correct"])
        on_cpu = collections.OrderedDict((k, v.detach().cpu()) for k, v in weights.items())
        on_cpu._metadata = getattr(weights, "_metadata", None)          # the modules' versions
        utils.atomic_torch_save(with_provenance(on_cpu, self.provenance()), self.paths["model.pt"])

    def provenance(self) -> dict:
        """What model.pt was trained on, from the record: the data, the held-out split and the
        accuracy on it (the last epoch's: the weights model.pt holds), the width, the names of the
        10 outputs in order, and the code's commit (weights.PROVENANCE_FIELDS)."""
        r, final = self.record, self.record["history"][-1]
        return {"source": r["data"]["source"], "train_images": r["data"]["train_images"],
                "split": r["data"].get("eval_split", "test"), "accuracy": final["test_acc"],
                "correct": final["test_correct"], "n": final["test_n"], "width": r["config"]["width"],
                "epochs": final["epoch"], "classes": list(CLASSES), "commit": (r.get("code") or {}).get("git_commit")}

    def write(self):
        utils.atomic_write_json(self.record, self.paths["metrics.json"])

    def where_to_resume(self, kept="complete") -> str:
        epoch, path = self.saved
        if not epoch:
            return "no epoch had finished, so there is nothing to resume; start again"
        if not os.path.isfile(path):                     # its folder removed, say: never offer it
            return (f"the last checkpoint (epoch {epoch}, {path}) no longer exists, so there is nothing to resume; "
                    "start again")
        return (f"the last {kept} checkpoint (epoch {epoch}) is {path}; continue with: "
                f"python train.py --resume {path}")

    def _stop(self, status):
        """metrics.json for a run that stopped: `status`, and only the epochs the checkpoint holds
        (where metrics.json can still be written: a full disk may refuse it too)."""
        self.record["status"] = status
        self.record["history"] = self.record["history"][:self.saved[0]]
        try:
            self.write()
        except OSError:
            pass
