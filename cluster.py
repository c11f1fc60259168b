"""The processes torchrun starts: which one this is, its device, and how they share out a series.

    torchrun --nproc-per-node=2 train.py --seeds 8          # 8 runs over 2 processes (2 GPUs)

torchrun (torch.distributed.run, shipped with torch) starts one process per device, on one
machine or many, and gives each its rank and the address of a key-value store that all of them
reach (its environment: RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR, ...). A
series (series.py) needs nothing more than that store: no tensor crosses processes, so no process
group (NCCL or gloo) is made. Each process claims the next run with the store's atomic counter
(`claims`), so a faster device takes more runs and no run is trained twice; the runs' folders on
the shared disk say which runs are finished, so a restart (torchrun --max-restarts, or the same
command again) continues where the series was. docs/scaling.md shows it at work.
"""
import datetime
import os
import socket
import time
import uuid
from dataclasses import dataclass
from typing import Optional

import torch

import utils
from utils import UsageError

POLL_SECONDS = 0.2           # how often a waiting process asks the store again


@dataclass
class Process:
    """One of torchrun's processes. `attempt` counts the starts of the group before this one
    (torchrun's restarts): the store outlives a restart, so every key of an attempt carries it
    (`key`)."""
    rank: int                    # 0 .. world_size - 1, over every machine
    world_size: int
    local_rank: int              # 0 .. local_world_size - 1 on this machine: its GPU
    local_world_size: int
    host: str
    attempt: int
    store: "torch.distributed.Store"

    def key(self, name) -> str:
        return f"series/attempt-{self.attempt}/{name}"

    @property
    def name(self) -> str:
        return f"rank {self.rank} of {self.world_size} ({self.host})"

    def wait_for_all(self, name):
        """Add one to the counter `name` and wait until every process has (a barrier through the
        store, with no timeout: the others may be in the middle of a long run)."""
        key = self.key(name)
        count = self.store.add(key, 1)
        while count < self.world_size:
            time.sleep(POLL_SECONDS)
            count = self.store.add(key, 0)


def launched() -> bool:
    """True in a process of a torchrun that started more than one (torchrun sets WORLD_SIZE)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def join() -> Process:
    """This process, connected to torchrun's store (torch.distributed.rendezvous with env://, the
    variables torchrun sets). Call only when launched()."""
    import torch.distributed as dist
    if not dist.is_available():
        raise UsageError("this PyTorch build has no torch.distributed: run the series in one process "
                         "(python train.py ...) instead of under torchrun")
    try:
        store, rank, world_size = next(dist.rendezvous("env://", timeout=datetime.timedelta(minutes=5)))
    except (ValueError, RuntimeError, TimeoutError) as e:   # a variable missing, the store not reached
        raise UsageError(f"WORLD_SIZE={os.environ.get('WORLD_SIZE')} says this process is one of torchrun's, but "
                         f"it cannot reach the others ({utils.first_line(e)}): start the series with torchrun, "
                         "or unset WORLD_SIZE to run it in one process") from None
    # The attempt: how many times a process of this rank has started before, from the store. Every
    # rank starts once per start of the group, so all agree; TORCHELASTIC_RESTART_COUNT does not
    # do here: each machine's launcher counts only the restarts its own workers' failures caused.
    attempt = store.add(f"series/starts/rank-{rank}", 1) - 1
    return Process(rank=rank, world_size=world_size, local_rank=int(os.environ.get("LOCAL_RANK", "0")),
                   local_world_size=int(os.environ.get("LOCAL_WORLD_SIZE", "1")), host=socket.gethostname(),
                   attempt=attempt, store=store)


def device_for(proc: Process, device: str) -> str:
    """The device of this process: the GPU numbered by its local rank where the runs go to CUDA
    (--device auto or cuda), else the one asked for (auto: MPS or the CPU). More processes on
    this machine than GPUs is refused by every process, before any run starts. --device cuda:N
    puts every process on GPU N (several processes sharing one large GPU)."""
    wants_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    if device == "auto" and not wants_cuda:          # as utils.pick_runtime would choose: MPS, else the CPU
        return "mps" if torch.backends.mps.is_available() else "cpu"
    if not wants_cuda:
        return device
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if gpus == 0:
        raise UsageError(f"--device cuda was asked for, but {proc.host} has no CUDA GPU that PyTorch sees: "
                         "use --device cpu (the processes then share the cores)")
    if proc.local_world_size > gpus:
        raise UsageError(f"torchrun started {proc.local_world_size} processes on {proc.host}, which has {gpus} "
                         f"GPU(s): one process per GPU, so give --nproc-per-node={gpus} (or --device cuda:0 to "
                         "share one GPU on purpose)")
    return f"cuda:{proc.local_rank}"


def split_threads(proc: Process) -> int:
    """CPU threads for this process: this machine's cores shared evenly among torchrun's
    processes on it, at least one each, so that they do not oversubscribe the cores (torchrun
    itself sets OMP_NUM_THREADS=1 for every process, which leaves cores idle)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    threads = max(1, cores // proc.local_world_size)
    torch.set_num_threads(threads)
    return threads


def check_shared_folder(proc: Process, folder: str):
    """Every process must see the same out_dir: each run's folder, finished or not, is what tells
    the others (and a restart) that the run exists. Rank 0 writes a file there with a fresh token;
    each process says through the store whether it reads the same token; a process that does not
    (another machine's disk) makes every process refuse, in one line naming the machines."""
    if proc.rank == 0:
        token = uuid.uuid4().hex                      # in the file's name too: no other series' file
        with open(os.path.join(folder, f".shared-check-{token}"), "w") as f:
            f.write(token)
        proc.store.set(proc.key("folder-token"), token)
    token = proc.store.get(proc.key("folder-token")).decode()
    marker = os.path.join(folder, f".shared-check-{token}")
    try:
        with open(marker) as f:
            sees = f.read().strip() == token
    except OSError:
        sees = False
    proc.store.set(proc.key(f"folder-seen/{proc.rank}"), "yes" if sees else f"no:{proc.host}")
    keys = [proc.key(f"folder-seen/{r}") for r in range(proc.world_size)]
    proc.store.wait(keys)
    blind = sorted({v.decode()[3:] for v in proc.store.multi_get(keys) if v.decode() != "yes"})
    if proc.rank == 0:
        try:
            os.remove(marker)
        except OSError:
            pass
    if blind:
        raise UsageError(f"--out-dir {folder} is not shared: the processes on {', '.join(blind)} do not see the "
                         "file that rank 0 wrote there. Every machine of the series must write to the same "
                         "folder (a shared file system such as NFS), given by the same path")


def claims(proc: Optional[Process], n: int):
    """The indices 0 .. n-1 of the runs this process should take, in the order it takes them: all
    of them in one process; under torchrun the next unclaimed one, from the store's atomic
    counter, each time the process asks (so each index goes to exactly one process)."""
    if proc is None:
        yield from range(n)
        return
    while True:
        index = proc.store.add(proc.key("next-run"), 1) - 1
        if index >= n:
            return
        yield index
