"""A series spread over torchrun's processes (cluster.py, series.py): the same numbers as one
process, a killed worker restarted, everything killed and started again, two machines over a c10d
rendezvous, a folder they do not share; and the sweep's folders and table. Every torchrun here is
the real one (python -m torch.distributed.run), on the CPU, one thread per process."""
import dataclasses
import glob
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time

import pytest
import torch

import cluster
import series
import settings
import train
from conftest import cli_flags
from utils import UsageError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# A few seconds a run at one thread; long enough (24 steps) that a worker can be killed mid-run.
TINY = dict(synthetic=True, synthetic_train=256, synthetic_test=64, width=4, batch_size=64, eval_batch_size=64,
            epochs=6, lr_test_iters=4, precision="fp32", device="cpu", progress=False, plots=False)


def two_cores():
    """Two of this machine's cores (one if it has one): torchrun's 2 processes get one thread each
    (cluster.split_threads shares the cores a process may use), as the reference run has."""
    cores = sorted(os.sched_getaffinity(0))
    return set(cores[:2])


class Launcher(subprocess.Popen):
    """A torchrun launcher whose workers write to files of their own (--redirects 3), so that two
    processes' lines never cut into each other in one pipe."""

    def output(self, timeout=300):
        """(exit code, every worker's stdout and stderr, each whole, then torchrun's own output)."""
        own, _ = self.communicate(timeout=timeout)
        out = ""
        for path in sorted(glob.glob(os.path.join(self.log_dir, "**", "std*.log"), recursive=True)):
            with open(path) as f:
                out += f.read()
        return self.returncode, out + own


def torchrun(args, *launcher, cwd=ROOT, wait=True, cores=None):
    """python -m torch.distributed.run LAUNCHER train.py ARGS on `cores` (two_cores() by default):
    its Launcher, or with wait, what Launcher.output returns."""
    log_dir = tempfile.mkdtemp(prefix="torchrun-logs-")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--log-dir", log_dir, "--redirects", "3", *launcher,
           os.path.join(ROOT, "train.py"), *args]
    cores = cores or two_cores()
    proc = Launcher(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                    preexec_fn=lambda: os.sched_setaffinity(0, cores), start_new_session=True)
    proc.log_dir = log_dir
    return proc.output() if wait else proc


def weights(folder):
    return torch.load(os.path.join(folder, "model.pt"), weights_only=True)


def comparable(record):
    """What must be identical between two runs of the same settings: not the timings, the code
    version or where the run was written."""
    hist = [{k: v for k, v in h.items() if not k.endswith("seconds")} for h in record["history"]]
    return (record["status"], hist, record.get("lr_schedule"), record.get("test_accuracy"), record["lr_min"],
            record["lr_max"], record.get("lr_range_test"))


def same_runs(a, b, folders):
    for folder in folders:
        ra, rb = (json.loads(open(os.path.join(x, folder, "metrics.json")).read()) for x in (a, b))
        assert comparable(ra) == comparable(rb), folder
        if ra["status"] == "complete":
            wa, wb = weights(os.path.join(a, folder)), weights(os.path.join(b, folder))
            assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa), folder


def accuracy_table(summary):
    return [(r["point"], r["seed"], r["status"], r["test_correct"], r["lr_max"]) for r in summary["runs"]]


def trained_by_rank(log):
    """{rank: [runs]} from every process's last line ("rank 0 of 2 (host) trained 2 run(s): a, b")."""
    found = {}
    for rank, runs in re.findall(r"rank (\d+) of \d+ \(.*?\) trained \d+ run\(s\): (.*?)(?:;|$)", log, re.M):
        found[int(rank)] = [] if runs == "none" else runs.split(", ")
    return found


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The series in one process at one thread: 2 points x 2 seeds, one point diverging (LRMAX
    1e6), the other with its own range test."""
    out = tmp_path_factory.mktemp("one-process")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        summary = train.main(**TINY, seeds=2, sweep="lr_max=none,1e6", out_dir=str(out))
    finally:
        torch.set_num_threads(threads)
    return out, summary


FOLDERS = [f"lr_max={p}/seed-{s}" for p in ("none", "1000000.0") for s in (0, 1)]


# ---------------------------------------------------------------------------------------------- same numbers
def test_two_processes_give_the_runs_of_one_process_bit_for_bit(reference, tmp_path):
    ref, ref_summary = reference
    out = tmp_path / "spread"
    code, log = torchrun([*cli_flags(TINY), "--seeds", "2", "--sweep", "lr_max=none,1e6", "--out-dir", str(out)],
                         "--nproc-per-node", "2")
    assert code == 0, log
    assert log.count("cpu, 1 thread(s) (2 processes share this machine's cores)") == 2
    same_runs(ref, out, FOLDERS)
    summary = json.loads((out / "summary.json").read_text())
    assert accuracy_table(summary) == accuracy_table(ref_summary)
    assert summary["runs_diverged"] == 2 and summary["status"] == "complete"
    assert [p["point"] for p in summary["points"]] == [p["point"] for p in ref_summary["points"]]
    # Every run trained exactly once, each by one of the two processes.
    by_rank = trained_by_rank(log)
    assert set(by_rank) == {0, 1} and sorted(sum(by_rank.values(), [])) == sorted(FOLDERS)
    assert (out / "README.md").exists() and log.count("per point, best mean first") == 1   # rank 0's table


# ---------------------------------------------------------------------------------------------- faults
def running_pid(out):
    """(pid, folder) of a worker in the middle of a run: its folder's lock names it, and its
    metrics.json records at least one epoch of a run still running; None if there is none yet."""
    for lock in out.glob("**/.run.lock"):
        try:
            record = json.loads((lock.parent / "metrics.json").read_text())
            pid = int(lock.read_text())
        except (OSError, ValueError):
            continue
        if record["status"] == "running" and len(record["history"]) >= 1:
            return pid, lock.parent
    return None


def finished_folders(out):
    return sorted(m.parent for m in out.glob("**/seed-*/metrics.json")
                  if json.loads(m.read_text())["status"] in ("complete", "diverged"))


def kill_mid_run(proc, out):
    """SIGKILL a worker in the middle of a run, once another run has finished; (its run's folder,
    the folders of the runs finished then)."""
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        found, finished = running_pid(out), finished_folders(out)
        if found and finished:
            os.kill(found[0], signal.SIGKILL)
            return found[1], finished
        time.sleep(0.02)
    pytest.fail("no run was caught in the middle")


# The diverging point first: the first run claimed diverges at its first step, before any run of
# the other point is killed in its middle, so a run has finished when the killing is done.
DIVERGING_FIRST = [*cli_flags(TINY), "--seeds", "2", "--sweep", "lr_max=1e6,none"]


def by_folder(summary):
    return sorted(accuracy_table(summary))


def kept_and_resumed(log, out, killed):
    """The runs finished before the kill were kept, not run again; the killed run resumed from its
    checkpoint. killed: what kill_mid_run returned."""
    folder, finished = killed
    assert finished and all(f"kept the finished run in {f} (" in log for f in finished), finished
    assert f"resumed from {folder / 'checkpoint.pt'}" in log
    assert folder.parent.name == "lr_max=none"


def test_a_worker_killed_mid_run_is_restarted_and_the_series_ends_as_if_it_had_not_been(reference, tmp_path):
    ref, ref_summary = reference
    out = tmp_path / "killed"
    proc = torchrun([*DIVERGING_FIRST, "--out-dir", str(out)], "--nproc-per-node", "2", "--max-restarts", "1",
                    wait=False)
    killed = kill_mid_run(proc, out)
    code, log = proc.output()
    assert code == 0, log
    kept_and_resumed(log, out, killed)
    same_runs(ref, out, FOLDERS)
    assert by_folder(json.loads((out / "summary.json").read_text())) == by_folder(ref_summary)


def test_everything_killed_then_the_same_command_continues_the_series(reference, tmp_path):
    ref, ref_summary = reference
    out = tmp_path / "all-killed"
    args = [*DIVERGING_FIRST, "--out-dir", str(out)]
    proc = torchrun(args, "--nproc-per-node", "2", wait=False)
    workers = []
    while len(workers) < 2 and proc.poll() is None:     # torchrun's two workers: children of its agent
        with open(f"/proc/{proc.pid}/task/{proc.pid}/children") as f:
            workers = [int(p) for p in f.read().split()]
        time.sleep(0.02)
    killed = kill_mid_run(proc, out)
    for pid in [proc.pid, *workers]:                    # the workers run in sessions of their own
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.output(timeout=60)
    assert json.loads((killed[0] / "metrics.json").read_text())["status"] == "running"  # cut, not ended
    code, log = torchrun(args, "--nproc-per-node", "2")
    assert code == 0, log
    kept_and_resumed(log, out, killed)
    same_runs(ref, out, FOLDERS)
    assert by_folder(json.loads((out / "summary.json").read_text())) == by_folder(ref_summary)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def two_machines(args, cwds, *launcher, during=None):
    """Two torchrun launchers, as two machines of one job: --nnodes 2, one process each, meeting
    at a c10d rendezvous on 127.0.0.1, each on a core of its own (so each process runs one
    thread, as the reference does); during(launchers) is called while they run. Returns
    [(exit code, output)] of each."""
    launcher = ["--nnodes", "2", "--nproc-per-node", "1", "--rdzv-backend", "c10d",
                "--rdzv-endpoint", f"127.0.0.1:{free_port()}", "--rdzv-id", "series-test", *launcher]
    cores = sorted(two_cores())
    procs = [torchrun(args, *launcher, cwd=cwd, wait=False, cores={cores[i % len(cores)]})
             for i, cwd in enumerate(cwds)]
    if during:
        during(procs)
    return [p.output(timeout=120) for p in procs]


def test_two_machines_share_out_a_series_over_a_c10d_rendezvous(reference, tmp_path):
    ref, ref_summary = reference
    out = tmp_path / "two-machines"
    ended = two_machines([*cli_flags(TINY), "--seeds", "2", "--sweep", "lr_max=none,1e6", "--out-dir", str(out)],
                         [tmp_path, tmp_path])
    assert [code for code, _ in ended] == [0, 0], ended
    log = "".join(out_ for _, out_ in ended)
    by_rank = trained_by_rank(log)
    assert set(by_rank) == {0, 1} and sorted(sum(by_rank.values(), [])) == sorted(FOLDERS)
    same_runs(ref, out, FOLDERS)
    assert accuracy_table(json.loads((out / "summary.json").read_text())) == accuracy_table(ref_summary)


def test_a_worker_killed_on_one_of_two_machines_is_restarted_with_the_other(reference, tmp_path):
    """Across machines the launchers count their restarts apart (only the one whose worker died
    counts one), so the processes agree on the attempt through the store, not through
    TORCHELASTIC_RESTART_COUNT."""
    ref, ref_summary = reference
    out = tmp_path / "two-machines-killed"
    killed = []
    ended = two_machines([*DIVERGING_FIRST, "--out-dir", str(out)], [tmp_path, tmp_path], "--max-restarts", "1",
                         during=lambda procs: killed.append(kill_mid_run(procs[0], out)))
    assert [code for code, _ in ended] == [0, 0], ended
    kept_and_resumed("".join(log for _, log in ended), out, killed[0])
    same_runs(ref, out, FOLDERS)
    assert by_folder(json.loads((out / "summary.json").read_text())) == by_folder(ref_summary)


def test_machines_that_do_not_share_the_output_folder_are_refused_before_any_run(tmp_path):
    # The same relative --out-dir from two working folders: two folders, as on two machines' disks.
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    ended = two_machines([*cli_flags(TINY), "--seeds", "2", "--out-dir", "series"], [tmp_path / "a", tmp_path / "b"])
    for code, log in ended:
        assert code != 0
        assert re.search(r"^error: --out-dir series is not shared: the processes on \S+ do not see the file", log, re.M)
        assert "Traceback" not in log.split("error: --out-dir")[0]
    assert not list(tmp_path.glob("*/series/seed-*"))                     # no run started


# ---------------------------------------------------------------------------------------------- in one process
def simulated(rank, world_size, local_world_size=None, store=None):
    """A torchrun process simulated in this one: rank, sizes and an in-memory store of our choice."""
    return cluster.Process(rank=rank, world_size=world_size, local_rank=rank,
                           local_world_size=local_world_size or world_size, host="host-a", attempt=0,
                           store=store if store is not None else torch.distributed.HashStore())


def test_claims_hand_each_run_to_exactly_one_process():
    store = torch.distributed.HashStore()
    a, b = simulated(0, 2, store=store), simulated(1, 2, store=store)
    ca, cb = cluster.claims(a, 5), cluster.claims(b, 5)
    taken = {"a": [next(ca)], "b": [next(cb), next(cb)]}          # b is faster: it takes two
    taken["a"] += list(ca)
    taken["b"] += list(cb)
    assert sorted(taken["a"] + taken["b"]) == [0, 1, 2, 3, 4]
    assert taken == {"a": [0, 3, 4], "b": [1, 2]}
    assert list(cluster.claims(simulated(0, 1), 3)) == [0, 1, 2]      # one process: every run, in order
    # A restart (attempt 1) counts afresh: the store outlives the restart, the attempt's keys do not.
    assert next(cluster.claims(dataclasses.replace(a, attempt=1), 5)) == 0


def test_a_process_with_no_run_left_says_so_and_ends_cleanly(tmp_path, monkeypatch, capsys):
    """More processes than runs: rank 1 finds every run claimed (the counter past the end), says
    so in its last line, waits for the others, and returns the series' summary."""
    out = tmp_path / "idle"
    out.mkdir()
    proc = simulated(1, 2, local_world_size=1)
    proc.store.set(proc.key("folder-token"), "token")         # rank 0's share: its token and its end
    (out / ".shared-check-token").write_text("token")
    proc.store.set(proc.key("folder-seen/0"), "yes")
    proc.store.add(proc.key("next-run"), 1)                   # rank 0 took the one run
    proc.store.add(proc.key("ended"), 1)
    monkeypatch.setattr(cluster, "launched", lambda: True)
    monkeypatch.setattr(cluster, "join", lambda: proc)
    threads = torch.get_num_threads()
    try:
        summary = train.main(**TINY, sweep="lr_max=0.1", out_dir=str(out))
    finally:
        torch.set_num_threads(threads)
    log = capsys.readouterr().out
    assert "rank 1 of 2 (host-a) trained 0 run(s): none (no run left to claim: 1 runs for 2 processes)" in log
    assert "LR range test" not in log and "Epoch" not in log                    # it trained nothing
    assert summary["runs_finished"] == 0 and not (out / "summary.json").exists()  # rank 0 writes it


def test_one_run_under_torchrun_is_refused_in_one_line(monkeypatch, tmp_path):
    monkeypatch.setattr(cluster, "launched", lambda: True)
    monkeypatch.setattr(cluster, "join", lambda: simulated(0, 2))
    with pytest.raises(UsageError, match="one run stays on one device: give --seeds N or --sweep"):
        train.main(**TINY, out_dir=str(tmp_path))
    assert not list(tmp_path.iterdir())


def test_world_size_without_torchrun_is_one_line(monkeypatch, tmp_path, capsys):
    """WORLD_SIZE left in the environment by something else: one line, not a traceback."""
    monkeypatch.setenv("WORLD_SIZE", "2")
    for name in ("MASTER_ADDR", "MASTER_PORT", "RANK"):
        monkeypatch.delenv(name, raising=False)
    code = settings.cli(train.main, train.Config, [*cli_flags(TINY), "--seeds", "2", "--out-dir", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and err.startswith("error: WORLD_SIZE=2 says this process is one of "
                                                                  "torchrun's, but it cannot reach the others (")
    assert "unset WORLD_SIZE" in err and not (tmp_path / "o").exists()


def test_more_processes_than_gpus_is_one_line_before_any_run(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    proc = simulated(3, 4)
    with pytest.raises(UsageError, match="torchrun started 4 processes on host-a, which has 2 GPU\\(s\\): one "
                                         "process per GPU, so give --nproc-per-node=2"):
        cluster.device_for(proc, "auto")
    assert cluster.device_for(simulated(1, 2), "auto") == "cuda:1"          # its local rank's GPU
    assert cluster.device_for(simulated(1, 2), "cuda:0") == "cuda:0"        # one GPU shared on purpose
    assert cluster.device_for(simulated(1, 2), "cpu") == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(UsageError, match="has no CUDA GPU"):
        cluster.device_for(simulated(0, 2), "cuda")


def test_the_cores_are_shared_among_the_processes_of_a_machine(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)))
    threads = torch.get_num_threads()
    try:
        assert cluster.split_threads(simulated(0, 6, local_world_size=3)) == 2 == torch.get_num_threads()
        assert cluster.split_threads(simulated(0, 16, local_world_size=16)) == 1
    finally:
        torch.set_num_threads(threads)


# ---------------------------------------------------------------------------------------------- the sweep
def test_a_sweep_runs_the_grid_in_folders_named_for_its_settings_with_a_table_per_point(tmp_path, one_cpu_thread):
    out = tmp_path / "sweep"
    quick = {**TINY, "epochs": 2}
    summary = train.main(**quick, seeds=2, sweep="lr_max=0.05,0.5 label_smoothing=0,0.2", out_dir=str(out))
    points = ["label_smoothing=0.0,lr_max=0.05", "label_smoothing=0.2,lr_max=0.05",
              "label_smoothing=0.0,lr_max=0.5", "label_smoothing=0.2,lr_max=0.5"]
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == sorted(points)
    for point in points:
        assert sorted(p.name for p in (out / point).iterdir()) == ["seed-0", "seed-1"]
        record = json.loads((out / point / "seed-1" / "metrics.json").read_text())
        settings_ = dict(kv.split("=") for kv in point.split(","))
        assert record["config"]["lr_max"] == float(settings_["lr_max"]) and record["config"]["seed"] == 1
        assert record["config"]["label_smoothing"] == float(settings_["label_smoothing"])
        assert record["lr_source"].startswith("lr_max given")
    # The table: n, mean, sample std, min and max of each point's runs, sorted by mean.
    table = summary["points"]
    assert sorted(t["point"] for t in table) == sorted(points)
    means = [t["test_accuracy"]["mean"] for t in table]
    assert means == sorted(means, reverse=True)
    for t in table:
        accs = [r["test_accuracy"] for r in summary["runs"] if r["point"] == t["point"]]
        assert t["test_accuracy"]["n"] == 2 and t["test_accuracy"]["mean"] == pytest.approx(sum(accs) / 2)
        assert t["test_accuracy"]["std"] == pytest.approx(abs(accs[0] - accs[1]) / 2 ** 0.5)   # sample std of 2
        assert (t["test_accuracy"]["min"], t["test_accuracy"]["max"]) == (min(accs), max(accs))
        first = [r["test_accuracy"] for r in summary["runs"] if r["point"] == points[0]]
        if t["point"] != points[0]:
            assert t["minus_first"]["mean"] == pytest.approx(sum(accs) / 2 - sum(first) / 2)
    report = (out / "README.md").read_text()
    assert report.index(f"| `{table[0]['point']}` | 2 |") < report.index(f"| `{table[-1]['point']}` | 2 |")
    assert all((out / link).exists() for link in re.findall(r"\]\(([^)]+)\)", report))
    assert summary["runs_planned"] == 8 and summary["status"] == "complete"
    # A point's run is the single run with those flags, bit for bit.
    single = train.main(**quick, lr_max=0.5, label_smoothing=0.2, seed=1, out_dir=str(tmp_path / "single"))
    same_runs(tmp_path / "single", out / points[3] / "seed-1", ["."])
    assert single["test_accuracy"] == json.loads((out / points[3] / "seed-1" / "metrics.json").read_text())["test_accuracy"]


def test_the_sweep_flag_repeats_and_its_mistakes_are_one_line(tmp_path, capsys):
    flags_ = train.Config.parse_args(["--sweep", "lr_max=0.1,0.2", "--sweep", "ema_epochs=0,2"])
    assert flags_ == {"sweep": "lr_max=0.1,0.2 ema_epochs=0,2"}
    assert series.parse_sweep("cutout_inside=false,true tta=on", train.Config) == [
        {"cutout_inside": False, "tta": True}, {"cutout_inside": True, "tta": True}]
    assert series.parse_sweep("lr_max=none,0.4 epochs=12", train.Config) == [
        {"lr_max": None, "epochs": 12}, {"lr_max": 0.4, "epochs": 12}]
    for sweep, says in [("seed=1,2", "'seed' cannot be swept (a series sets it for each run)"),
                        ("lr_mx=0.1", "'lr_mx' cannot be swept (valid settings:"),
                        ("lr_max=0.1,x", "'x' is not a value of lr_max (a number or none)"),
                        ("epochs=2.5", "'2.5' is not a value of epochs (a whole number)"),
                        ("tta=maybe", "'maybe' is not a value of tta (true or false)"),
                        ("lr_max=0.1,0.10", "a value is repeated"),
                        ("lr_max=", "no values"),
                        ("lr_max=0.1 lr_max=0.2", "lr_max is swept twice"),
                        ("momentum=0.9,1.5", "--sweep point momentum=1.5: momentum must lie in [0, 1)"),
                        ("lr_max=0.0,-0.0", "a value is repeated"),
                        ("device=cpu,cuda", "'device' cannot be swept (a series sets it for each run)"),
                        ("lr_max=0.1, 0.2", "an empty value (no spaces inside one --sweep"),
                        ("lr_max", "not NAME=VALUE,VALUE,..."),
                        ("epochs=2,3 --epochs 4", "epochs is given (--epochs 4) and swept (--sweep epochs=...)"),
                        ("data_dir=a/b,a-b", "two points would share a folder")]:
        words = sweep.split(" --epochs ")
        code = settings.cli(train.main, train.Config, ["--synthetic", "--sweep", *words[0].split(" --sweep "),
                                                       *(["--epochs", words[1]] if len(words) > 1 else []),
                                                       "--out-dir", str(tmp_path / "o")])
        err = capsys.readouterr().err
        assert code == 2 and says in err and err.count("\n") == 1, (sweep, err)
        assert not (tmp_path / "o").exists()


def test_the_table_per_point_pairs_by_seed_and_counts_diverged_runs():
    def row(point, seed, acc):
        return {"point": point, "seed": seed, "status": "diverged" if acc is None else "complete",
                "test_accuracy": acc, "test_correct": None, "test_n": 10000}
    points = [{"ema_epochs": 0.0}, {"ema_epochs": 2.0}, {"ema_epochs": 4.0}]
    rows = [row("ema_epochs=0.0", 0, 90.0), row("ema_epochs=0.0", 1, 90.4), row("ema_epochs=0.0", 2, 89.9),
            row("ema_epochs=2.0", 0, 90.5), row("ema_epochs=2.0", 1, 90.7), row("ema_epochs=2.0", 2, None),
            row("ema_epochs=4.0", 3, 91.0)]
    table = series.point_table(rows, points)
    assert [t["point"] for t in table] == ["ema_epochs=4.0", "ema_epochs=2.0", "ema_epochs=0.0"]   # best mean first
    first, ema2, ema4 = table[2], table[1], table[0]
    assert first["minus_first"] is None and first["test_accuracy"]["mean"] == pytest.approx(90.1)
    assert first["test_accuracy"]["std"] == pytest.approx(0.2645751, abs=1e-6)      # sample std of 90.0, 90.4, 89.9
    assert ema2["runs_finished"] == 3 and ema2["runs_diverged"] == 1                  # seed 2 diverged: counted
    assert ema2["minus_first"]["pairs"] == 2 and ema2["minus_first"]["mean"] == pytest.approx(0.4)   # +0.5, +0.3
    assert ema2["minus_first"]["se"] == pytest.approx(0.1)
    assert ema4["minus_first"] == {"pairs": 0, "mean": None, "se": None}             # seed 3: no pair
    assert series.difference(ema2) == "+0.40 ± 0.10 (2 pairs)" and series.difference(ema4) == "-"
