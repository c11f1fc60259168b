"""The machinery every module shares: errors, device and precision, provenance, atomic files."""
import contextlib
import io
import json
import os
import platform
import subprocess
import tempfile
import time
from dataclasses import dataclass

import torch


# ----------------------------------------------------------------------------------------------
# Errors: each is one line for the user, with what to do

class UsageError(Exception):
    """A mistake the user can fix. The message says what was wrong and what to do.

    The command line prints the message alone (no traceback) and exits with `exit_code`;
    `train.main()` called from Python raises it, so a notebook keeps the traceback.
    """
    exit_code = 2


class Interrupted(UsageError):
    """Ctrl-C (SIGINT) during a run: the last checkpoint is kept and the message says how to go on."""
    exit_code = 130      # the shell's convention for "stopped by SIGINT": 128 + 2


class Terminated(Interrupted):
    """SIGTERM during a run (a notebook's stop, a job scheduler): handled as Ctrl-C is."""
    exit_code = 143      # 128 + 15, as a shell reports a process ended by SIGTERM


class Diverged(UsageError):
    """The loss or the weights became non-finite: training stopped before saving them."""
    exit_code = 3


class WriteFailed(UsageError):
    """A file of the run could not be written (disk full, size limit, folder gone): the last
    checkpoint is intact and the message says how to resume."""
    exit_code = 4


# ----------------------------------------------------------------------------------------------
# Device and precision: the one place where they are chosen

@dataclass
class Runtime:
    device: torch.device
    precision: str                 # "bf16" | "fp16" | "fp32"

    @property
    def amp_dtype(self):
        return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.precision)

    def autocast(self):
        """Autocast context for forward passes (a null context in fp32)."""
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def grad_scaler(self):
        """fp16 needs loss scaling (its range is narrow); bf16 has fp32's range and does not."""
        return torch.amp.GradScaler(self.device.type, enabled=self.precision == "fp16")

    def sync(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        elif self.device.type == "mps":
            torch.mps.synchronize()

    def timer(self):
        return DeviceTimer(self.device)

    def describe(self) -> dict:
        info = {"device": str(self.device), "precision": self.precision,
                "torch": torch.__version__, "cpu": cpu_name(),
                "cpu_threads": torch.get_num_threads()}
        if self.device.type == "cuda":
            info["gpu"] = torch.cuda.get_device_name(self.device)
        return info


class DeviceTimer:
    """Seconds of device work between start() and stop(): CUDA events on CUDA (they time the GPU,
    not the host's launch queue), a synchronised host clock elsewhere."""

    def __init__(self, device):
        self.device = torch.device(device)
        self.cuda = self.device.type == "cuda"

    def start(self):
        if self.cuda:
            self.begin = torch.cuda.Event(enable_timing=True)
            self.begin.record()
        else:
            if self.device.type == "mps":
                torch.mps.synchronize()          # work queued earlier is not ours to time
            self.begin = time.perf_counter()
        return self

    def stop(self) -> float:
        if self.cuda:
            end = torch.cuda.Event(enable_timing=True)
            end.record()
            end.synchronize()
            return self.begin.elapsed_time(end) / 1000
        if self.device.type == "mps":
            torch.mps.synchronize()
        return time.perf_counter() - self.begin


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def code_version(repo=os.path.dirname(os.path.abspath(__file__))) -> dict:
    """The git commit of the code and whether tracked files had uncommitted changes; None for
    both where git or the repository is missing (files copied alone, a zip download)."""
    def git(*args):
        return subprocess.run(["git", "-C", repo, *args], capture_output=True, text=True,
                              timeout=10, check=True).stdout.strip()
    try:
        return {"git_commit": git("rev-parse", "HEAD"),
                "git_dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}
    except (OSError, subprocess.SubprocessError):
        return {"git_commit": None, "git_dirty": None}


def cpu_supports_bf16() -> bool:
    """True when oneDNN has native bf16 kernels (AVX512-BF16 or AMX): there bf16 is several times
    faster than fp32 (docs/performance.md); elsewhere it is emulated and slower than fp32."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def pick_runtime(device="auto", precision="auto") -> Runtime:
    """device: auto|cpu|cuda|mps (or "cuda:1"); precision: auto|fp32|bf16|fp16.

    auto picks CUDA, then MPS, then the CPU. Precision auto: bf16 autocast on CUDA GPUs that
    support it (Ampere and newer), fp16 with a grad scaler on older ones (Colab's T4); bf16 on
    CPUs with native bf16, else fp32; fp32 on MPS (its autocast support varies by macOS).
    """
    if device == "auto":
        if torch.cuda.is_available():
            device = "cuda"
        elif torch.backends.mps.is_available():
            device = "mps"
        else:
            device = "cpu"
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise UsageError(f"unknown device {device!r}: use auto, cpu, cuda, cuda:N or mps") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda was asked for, but PyTorch sees no CUDA GPU here "
                         f"(torch {torch.__version__}). Use --device auto or --device cpu.")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise UsageError("--device mps was asked for, but MPS is not available here. "
                         "Use --device auto or --device cpu.")
    if dev.type not in ("cpu", "cuda", "mps"):
        raise UsageError(f"unsupported device {device!r}: use auto, cpu, cuda or mps")
    if dev.type == "cuda":
        count = torch.cuda.device_count()
        if dev.index is not None and dev.index >= count:
            raise UsageError(f"--device {device}: this machine has {count} CUDA GPU(s), numbered from 0.")
        dev = torch.device("cuda", dev.index if dev.index is not None else torch.cuda.current_device())
        torch.cuda.set_device(dev)        # so events, streams and new tensors all use this GPU
    if precision not in ("auto", "fp32", "bf16", "fp16"):
        raise UsageError(f"precision must be auto, fp32, bf16 or fp16, got {precision!r}")
    if dev.type == "mps" and precision in ("bf16", "fp16"):
        # MPS autocast needs torch 2.5 (bf16 also macOS 14), and its GradScaler unscale kernel
        # is newer still: fp32 is the one precision that works on every MPS setup.
        raise UsageError(f"--precision {precision} is not supported on MPS here: use --precision "
                         "fp32 (what auto picks on MPS).")
    if precision == "auto":
        if dev.type == "cuda":
            # Native bf16 needs compute capability 8.0 (Ampere). torch.cuda.is_bf16_supported()
            # also says True for emulated bf16 (a T4 answers True), which is slow and has no
            # cuDNN convolutions, so ask for the capability itself.
            precision = "bf16" if torch.cuda.get_device_capability(dev) >= (8, 0) else "fp16"
        elif dev.type == "cpu":
            precision = "bf16" if cpu_supports_bf16() else "fp32"
        else:
            precision = "fp32"
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True       # fixed shapes: let cuDNN pick the fastest kernels
    return Runtime(dev, precision)


# ----------------------------------------------------------------------------------------------
# Files that are either whole or absent

def atomic_write(path, write):
    """write(tmp_path) then os.replace(tmp_path, path): a crash leaves the old file or the new
    one, never half of one. The temporary file is made in path's own folder (os.replace is
    atomic only within one file system) and removed if anything fails."""
    folder = os.path.dirname(os.path.abspath(path))
    try:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix="." + os.path.basename(path), suffix=".tmp")
    except OSError as e:                                         # the folder is gone or read-only
        raise OSError(e.errno, e.strerror or first_line(e), path) from e
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)        # mkstemp makes 0600; give the file the usual mode
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException as e:
        if os.path.exists(tmp):
            os.remove(tmp)
        if isinstance(e, OSError) and e.filename != path:         # name the file meant, not the temporary
            raise OSError(e.errno, e.strerror or first_line(e), path) from e
        raise


def first_line(e: BaseException) -> str:
    """The first line of an exception's message (at most 200 characters), for one-line errors."""
    return str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__


def atomic_torch_save(obj, path):
    """torch.save(obj) to path, whole or not at all. Serialised in memory first: a full disk or a
    file-size limit then fails in a plain write, an OSError with its errno, where torch's own zip
    writer would fail with a RuntimeError that does not say why."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)

    def write(tmp):
        with open(tmp, "wb") as f:
            f.write(buffer.getbuffer())
    atomic_write(path, write)


def atomic_write_json(obj, path):
    def write(tmp):
        with open(tmp, "w") as f:
            json.dump(obj, f, indent=2)
            f.write("\n")
    atomic_write(path, write)


def atomic_write_text(text, path):
    def write(tmp):
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
    atomic_write(path, write)


def ensure_writable_dir(path):
    """Create `path` if needed and prove it is writable, or raise UsageError saying so."""
    try:
        os.makedirs(path, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path):
            pass
    except OSError as e:
        raise UsageError(f"cannot write to the output folder {path!r} ({e.strerror or e}). "
                         "Choose another with --out-dir.") from None
