"""bench.py measures what it says: its FLOP counts are the specification's, its ratios are of the
numbers it timed, and every part runs (at toy sizes here; the speeds themselves are measured by
`python bench.py`, never by a test)."""
import json
import os

import pytest
import torch

import bench
import data
import utils
from devices import CUDA

CPU = utils.pick_runtime("cpu", "fp32")
DEVICES = ["cpu", CUDA]


def test_flop_counts_are_the_specifications_and_scale_with_width_squared():
    train_gflop, eval_gflop = bench.gflop_per_image(64)
    # SPEC section 5: 2.27 GFLOP per training image, 0.76 per evaluated image (forward only);
    # a backward pass costs two forwards.
    assert train_gflop == pytest.approx(2.27, abs=0.005) and eval_gflop == pytest.approx(0.76, abs=0.005)
    assert train_gflop == pytest.approx(3 * eval_gflop, rel=0.01)
    half = bench.gflop_per_image(32)
    assert half[0] == pytest.approx(train_gflop / 4, rel=0.02)     # convolutions: width x width


def test_datasheet_peaks_match_the_most_specific_name():
    assert bench.datasheet_tflops("NVIDIA H100 80GB HBM3") == 989
    assert bench.datasheet_tflops("NVIDIA H100 PCIe") == 756
    assert bench.datasheet_tflops("NVIDIA A100-SXM4-40GB") == 312
    assert bench.datasheet_tflops("NVIDIA A10") == 125
    assert bench.datasheet_tflops("Tesla T4") == 65
    assert bench.datasheet_tflops("NVIDIA L4") == 121
    assert bench.datasheet_tflops("NVIDIA L40S") == 362 and bench.datasheet_tflops("NVIDIA L40") == 181
    assert bench.datasheet_tflops("NVIDIA H100 NVL") == 835
    assert bench.datasheet_tflops("Some Future GPU") is None


class FakeClock(utils.Runtime):
    """The CPU runtime, whose timer's k-th stop() returns seconds[k]: timings with values the test
    chose, so every number a bench function derives from them is known here in advance."""

    def __init__(self, seconds):
        super().__init__(torch.device("cpu"), "fp32")
        self.seconds = list(seconds)

    def timer(self):
        clock = self

        class Timer:
            def start(self):
                return self

            def stop(self):
                return clock.seconds.pop(0)
        return Timer()


def test_augmentation_takes_the_best_of_three_timed_passes_and_compares_them(monkeypatch):
    d = data.synthetic_cifar10(128, 8)
    passes = iter([9.0, 0.5, 0.4, 0.45,        # DeviceLoader: a warm-up, then three timed passes
                   1.8])                       # torchvision, 0 workers
    timed = []

    def fake_seconds(batches, rt):
        timed.append(len(list(batches)))           # every batch of the pass is produced
        return next(passes)
    monkeypatch.setattr(bench, "seconds_per_epoch", fake_seconds)
    rows = []
    seconds = bench.bench_augmentation(d.train_images, d.train_labels, CPU, 64, rows, workers=(0,))
    assert seconds == {"DeviceLoader": 0.4, "torchvision v2, 0 workers": 1.8}
    assert timed == [2] * 5                        # 128 images in batches of 64, each pass whole
    assert rows == [("augment: DeviceLoader epoch", "0.400 s", "128 images on cpu"),
                    ("augment: torchvision v2, 0 workers", "1.800 s", "DeviceLoader is 4.5x faster")]


def test_seconds_per_epoch_and_time_steps_time_what_they_run():
    calls = []
    clock = FakeClock([6.0, 2.5])
    assert bench.seconds_per_epoch(iter([(1, 2)] * 3), clock) == 6.0
    assert bench.time_steps(lambda: calls.append(len(clock.seconds)), 2, 5, clock) == 2.5 / 5
    assert calls == [1] * 7                         # 2 warm-up steps, then 5 timed ones


def test_the_conventional_pipeline_makes_batches_of_the_same_kind():
    d = data.synthetic_cifar10(64, 8)
    conventional = bench.PerSampleDataset(d.train_images, d.train_labels)
    x, y = next(iter(torch.utils.data.DataLoader(conventional, batch_size=16)))
    ours, _ = next(iter(data.DeviceLoader(d.train_images, d.train_labels, 16, train=True, device="cpu")))
    assert x.shape == ours.shape == (16, 3, 32, 32) and x.dtype == ours.dtype == torch.float32
    assert torch.equal(y, d.train_labels[:16])
    # Normalised: black (0) maps to -mean/std, white (255) to (1 - mean)/std.
    mean, std = torch.tensor(data.CIFAR10_MEAN), torch.tensor(data.CIFAR10_STD)
    assert (x.amin((0, 2, 3)) >= -mean / std - 1e-5).all() and (x.amax((0, 2, 3)) <= (1 - mean) / std + 1e-5).all()


def test_throughput_divides_the_batch_by_the_seconds_per_step(monkeypatch):
    ran = []

    def fake_time_steps(step, warmup, steps, rt):
        step()                                      # the step runs (once) ...
        ran.append(rt.precision)
        return [0.25, 0.05][len(ran) - 1]           # ... and "takes" 0.25 s naive, 0.05 s ours
    monkeypatch.setattr(bench, "time_steps", fake_time_steps)
    rows = []
    assert bench.bench_throughput(CPU, 4, 1, 1, rows) == (0.25, 0.05)
    assert ran == ["fp32", "fp32"]
    assert rows == [("train step: naive fp32 NCHW", "16 img/s", "0.250 s/step"),
                    ("train step: ours (fp32, channels_last)", "80 img/s", "0.050 s/step, 5.00x the naive loop")]


def test_loop_overhead_compares_the_fastest_epoch_with_the_fastest_bare_steps():
    # In turn: bare, epoch, bare, epoch. The fastest of each: 2.0 s bare, 2.1 s epoch: +5.0 %.
    clock = FakeClock([2.4, 2.1, 2.0, 2.6])
    rows = []
    assert bench.bench_loop_overhead(clock, 8, 4, rows, repeats=2) == (2.1, 2.0)
    assert clock.seconds == []
    assert rows == [("loop: train.py epoch vs bare steps", "+5.0 %",
                     "2.10 s vs 2.00 s, 2 steps, best of 2 (goal <= 5%)")]


def test_recipe_arithmetic_on_a_known_run(monkeypatch):
    """bench_recipe's FLOP rate and floor for a run of 24 epochs of 97 steps of 512 images that
    trained for 12 s, on an H100 SXM in bf16: checked against the numbers worked out here."""
    asked = {}

    def fake_main(**settings):
        asked.update(settings)
        return {"config": {"epochs": 24, "batch_size": 512, "width": 64}, "steps_per_epoch": 97,
                "timings": {"train_seconds": 12.0, "eval_seconds": 1.5, "images_per_second": 99_328.0,
                            "compile_seconds": 0.0}}
    monkeypatch.setattr(bench.train, "main", fake_main)
    h100 = utils.Runtime(torch.device("cpu"), "bf16")
    monkeypatch.setattr(h100, "describe", lambda: {"gpu": "NVIDIA H100 80GB HBM3"})
    rows = []
    r = bench.bench_recipe(h100, False, rows, out_dir="/nowhere")
    train_tflop = 24 * 97 * 512 * bench.gflop_per_image(64)[0] / 1000     # 1,191,936 images: 2.7 PFLOP
    assert train_tflop == pytest.approx(2706, abs=3)
    assert r["achieved_tflops"] == pytest.approx(train_tflop / 12.0, rel=1e-12)
    assert r["floor_seconds"] == pytest.approx(train_tflop / 989, rel=1e-12)
    assert (asked["lr_min"], asked["lr_max"], asked["synthetic_train"], asked["compile"]) == (0.04, 0.4, 50_000, False)
    assert asked["precision"] == "bf16" and asked["out_dir"] == os.path.join("/nowhere", "bench_recipe_eager")
    assert rows[0][:2] == ("recipe 24 epochs, eager, bf16", "12.0 s train")
    assert rows[0][2].startswith(f"99,328 img/s, {train_tflop / 12:.1f} TFLOP/s, floor {train_tflop / 989:.1f} s at "
                                 "the 989 TFLOP/s datasheet peak")
    h100.precision = "fp32"                        # the datasheet peaks are bf16: no floor for fp32
    assert bench.bench_recipe(h100, True, [], out_dir="/nowhere")["floor_seconds"] is None


@pytest.mark.parametrize("device", DEVICES)
def test_recipe_row_is_the_runs_own_training_time_and_flop(device, tmp_path):
    rt = utils.pick_runtime(device, "auto")
    rows = []
    r = bench.bench_recipe(rt, False, rows, n_train=256, n_test=128, out_dir=str(tmp_path), epochs=2,
                           width=8, batch_size=64)
    assert (tmp_path / "bench_recipe_eager" / "metrics.json").exists()
    assert r["status"] == "complete" and r["steps_per_epoch"] == 4
    train_gflop = bench.gflop_per_image(8)[0]
    expected = 2 * 4 * 64 * train_gflop / 1000 / r["timings"]["train_seconds"]
    assert r["achieved_tflops"] == pytest.approx(expected, rel=1e-9)
    assert rows[0][0] == f"recipe 2 epochs, eager, {rt.precision}"
    peak = bench.datasheet_tflops(rt.describe().get("gpu", ""))
    assert (r["floor_seconds"] is None) == (peak is None or rt.precision == "fp32")


def test_device_slug_names_the_gpu_by_its_datasheet_piece(monkeypatch):
    rt = utils.Runtime(torch.device("cpu"), "bf16")
    assert bench.device_slug(rt) == "cpu"
    for name, slug in [("NVIDIA H100 80GB HBM3", "h100"), ("NVIDIA H100 NVL", "h100-nvl"), ("NVIDIA H200", "h200"),
                       ("Tesla T4", "t4"), ("NVIDIA L40S", "l40s"), ("Some Future GPU 9", "some-future-gpu-9")]:
        monkeypatch.setattr(rt, "describe", lambda name=name: {"gpu": name})
        assert bench.device_slug(rt) == slug


# ----------------------------------------------------------------------------------------------
# 5. The variants of the step (--variants)

@pytest.fixture
def fresh_dynamo(one_cpu_thread):
    """torch.compile's caches emptied before and after: each test compiles from scratch, and no
    test can reach the recompile limit, past which a compiled function silently runs eagerly."""
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def recording_backend(graphs, name="aot_eager"):
    """A torch.compile backend that keeps every graph it is given, then compiles it with `name`
    (aot_eager: traced through AOTAutograd, forward and backward, as inductor is, without
    generating code)."""
    backend = torch._dynamo.lookup_backend(name)

    def compile_graph(gm, example_inputs):
        graphs.append(gm)
        return backend(gm, example_inputs)
    return compile_graph


def graph_kinds(graphs):
    """(a graph calls a convolution, a graph reads the optimizer's parameter groups)."""
    calls = " ".join(str(n.target) for g in graphs for n in g.graph.nodes if n.op in ("call_function", "call_method"))
    inputs = " ".join(n.name for g in graphs for n in g.graph.nodes if n.op == "placeholder")
    return "conv2d" in calls, "param_groups" in inputs


def tiny_batches(n, batch=8, seed=1):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(batch, 3, 32, 32, generator=g).contiguous(memory_format=torch.channels_last),
             torch.randint(0, 10, (batch,), generator=g)) for _ in range(n)]


def assert_same_state(model, other, opt, other_opt, rel=1e-5):
    """Every weight, BatchNorm statistic and momentum buffer equal within `rel` of the tensor's
    largest magnitude."""
    pairs = list(zip(model.state_dict().items(), other.state_dict().values()))
    pairs += [((f"momentum {i}", opt.state[p]["momentum_buffer"]), other_opt.state[q].get("momentum_buffer"))
              for i, (p, q) in enumerate(zip(model.parameters(), other.parameters()))]
    for (name, a), b in pairs:
        assert b is not None, f"{name}: missing"
        scale = a.abs().max().item() if a.is_floating_point() else 1
        torch.testing.assert_close(b, a, rtol=0, atol=rel * max(scale, 1e-12), msg=lambda m: f"{name}: {m}")


def test_the_compiled_whole_step_computes_what_the_eager_step_computes(fresh_dynamo):
    """(c): three steps of a width-4 network at batch 8 in fp32, from the same weights, batches and
    LRs, compiled whole (aot_eager) and eager: the same losses, weights, BatchNorm statistics and
    momentum buffers. The graphs show that the SGD step ran compiled, not only the model."""
    graphs = []
    eager, eager_model, eager_opt = bench.variant_step("eager", CPU, width=4)
    compiled, model, opt = bench.variant_step("compile-step", CPU, width=4, backend=recording_backend(graphs))
    assert isinstance(opt.param_groups[0]["lr"], torch.Tensor) and not isinstance(eager_opt.param_groups[0]["lr"], torch.Tensor)
    for (x, y), lr in zip(tiny_batches(3), [0.05, 0.2, 0.4]):
        loss = compiled(x, y, lr)[1].item()
        assert loss == pytest.approx(eager(x, y, lr)[1].item(), rel=1e-5)
    assert eager_opt.param_groups[0]["lr"] == 0.4 and opt.param_groups[0]["lr"].item() == pytest.approx(0.4)
    assert_same_state(eager_model, model, eager_opt, opt)
    assert graph_kinds(graphs) == (True, True)


def test_the_compiled_model_variant_compiles_the_model_and_not_the_optimizer(fresh_dynamo):
    graphs = []
    step, model, opt = bench.variant_step("compile-model", CPU, width=4, backend=recording_backend(graphs, "eager"))
    x, y = tiny_batches(1)[0]
    step(x, y, 0.1)
    assert graph_kinds(graphs) == (True, False)
    assert opt.param_groups[0]["lr"] == 0.1 and len(opt.state) == len(list(model.parameters()))


def test_the_optimizer_variants_set_only_foreach(one_cpu_thread):
    settings = {key: bench.variant_step(key, CPU, width=4)[2].defaults for key in ("eager", "foreach", "for-loop")}
    assert (settings["eager"]["foreach"], settings["foreach"]["foreach"], settings["for-loop"]["foreach"]) == (None, True, False)
    for s in settings.values():
        assert (s["momentum"], s["nesterov"], s["weight_decay"], s["fused"]) == (0.9, True, 5e-4, None)
    with pytest.raises(ValueError, match="CUDA"):
        bench.variant_step("cuda-graphs", CPU, width=4)
    with pytest.raises(ValueError, match="unknown variant"):
        bench.variant_step("fused", CPU, width=4)


def test_the_compiled_step_with_fp16_and_the_grad_scaler_computes_each_step_as_eager(fresh_dynamo):
    """The T4's path (fp16 autocast + GradScaler) through the compiled whole step: each step, from
    the same state as the eager step, gives the same result. (Over several steps fp16 amplifies
    rounding differences of 1e-7 into visible ones, so the states are made equal before each.)"""
    rt = utils.Runtime(torch.device("cpu"), "fp16")
    eager, eager_model, eager_opt = bench.variant_step("eager", rt, width=4)
    compiled, model, opt = bench.variant_step("compile-step", rt, width=4, backend="aot_eager")
    for i, ((x, y), lr) in enumerate(zip(tiny_batches(2), [0.1, 0.3])):
        try:
            loss = eager(x, y, lr)[1].item()
        except RuntimeError as e:                  # a torch without fp16 autocast on the CPU
            pytest.skip(f"fp16 on the CPU: {e}")
        assert compiled(x, y, lr)[1].item() == pytest.approx(loss, rel=1e-5)
        assert_same_state(eager_model, model, eager_opt, opt)
        with torch.no_grad():                      # the next step starts from the same state
            for a, b in zip(eager_model.state_dict().values(), model.state_dict().values()):
                b.copy_(a)
            for p, q in zip(eager_model.parameters(), model.parameters()):
                opt.state[q]["momentum_buffer"].copy_(eager_opt.state[p]["momentum_buffer"])


def test_every_variant_row_runs_at_tiny_size_on_the_cpu(fresh_dynamo):
    rows = []
    out = bench.bench_variants(CPU, rows, width=4, batch_size=8, warmup=3, steps=2, repeats=2, backend="eager",
                               n_batches=2)
    assert [r[0] for r in rows] == list(bench.VARIANTS.values())
    assert rows[3] == ("(d) step: CUDA graphs of the whole step", "CUDA only", "not run on cpu") and out["cuda-graphs"] is None
    for key, row in zip(bench.VARIANTS, rows):
        if key == "cuda-graphs":
            continue
        v = out[key]
        assert len(v["rounds"]) == 2 and v["seconds_per_step"] == min(v["rounds"]) > 0
        assert row[1] == f"{8 / v['seconds_per_step']:,.0f} img/s"
        assert row[2].startswith(f"{1e3 * v['seconds_per_step']:.2f} ms/step, best of 2 x 2 steps")
        assert ("compile" in row[2]) == (key in bench.COMPILED) and ("x eager" in row[2]) == (key != "eager")
        assert v["recipe_seconds_estimate"] == pytest.approx(24 * (50_000 // 8) * v["seconds_per_step"])
    assert out["compile-step"]["graphs"] >= 2 and out["compile-model"]["graphs"] >= 1 and out["eager"]["graphs"] == 0
    rows = []
    seconds = bench.bench_eval_batch_sizes(CPU, rows, (8, 16), n_images=32, width=4, repeats=2)
    assert list(seconds) == [8, 16] and all(s > 0 for s in seconds.values())
    assert [r[0] for r in rows] == ["(f) eval: 32 images, batch 8", "(f) eval: 32 images, batch 16"]
    assert rows[0][1] == f"{seconds[8]:.3f} s"


def test_variants_flag_passes_its_settings_and_skips_the_default_rows(monkeypatch, tmp_path):
    asked = {}

    def fake_variants(rt, rows, **kw):
        asked["variants"] = kw
        rows.append(("(a) step: eager (today's)", "1 img/s", ""))
        return {"eager": {"seconds_per_step": 1.0}}

    def fake_eval(rt, rows, batch_sizes, n_images, width, repeats):
        asked["eval"] = (list(batch_sizes), n_images, width, repeats)
        return {b: 0.5 for b in batch_sizes}
    monkeypatch.setattr(bench, "bench_variants", fake_variants)
    monkeypatch.setattr(bench, "bench_eval_batch_sizes", fake_eval)
    monkeypatch.setattr(bench, "run_default", lambda *a: pytest.fail("the default rows ran"))
    r = bench.main(["--variants", "--device", "cpu", "--precision", "fp32", "--width", "8", "--batch-size", "16",
                    "--compile-backend", "aot_eager", "--eval-images", "64", "--eval-batch-sizes", "16,32",
                    "--json", str(tmp_path / "v_{gpu}.json")])
    assert asked["variants"] == dict(width=8, batch_size=16, warmup=3, steps=3, repeats=1, backend="aot_eager")
    assert asked["eval"] == ([16, 32], 64, 8, 1)
    on_disk = json.loads((tmp_path / "v_cpu.json").read_text())
    assert on_disk["variants"] == r["variants"] == {"eager": {"seconds_per_step": 1.0}}
    assert on_disk["evaluation_seconds"] == {"16": 0.5, "32": 0.5} and on_disk["settings"]["steps"] == 3
    assert [row[0] for row in on_disk["rows"]] == ["(a) step: eager (today's)", "peak CPU RSS"]
    bench.main(["--variants", "--device", "cpu", "--precision", "fp32", "--steps", "7", "--warmup", "0", "--repeats", "2"])
    assert (asked["variants"]["steps"], asked["variants"]["warmup"], asked["variants"]["repeats"]) == (7, 0, 2)


def test_variants_refuse_fp16_on_the_cpu_with_a_clear_message(capsys):
    with pytest.raises(SystemExit) as e:
        bench.main(["--variants", "--device", "cpu", "--precision", "fp16"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "--precision fp16" in err and "CUDA only" in err


def test_the_default_run_keeps_its_rows_and_runs_no_variant(monkeypatch, capsys):
    asked = {}

    def fake_augmentation(images, labels, rt, batch_size, rows):
        asked["augmentation"] = len(images)
        rows += [("aug", "", "")] * 3

    def fake_throughput(rt, batch_size, warmup, steps, rows):
        asked["throughput"] = (warmup, steps)
        rows += [("step", "", "")] * 2

    def fake_loop(rt, n_images, batch_size, rows):
        asked["loop"] = n_images
        rows.append(("loop", "", ""))
    monkeypatch.setattr(bench.cifar, "synthetic_cifar10", lambda n_train, n_test: data.Cifar10(
        torch.zeros(n_train, 0), torch.zeros(n_train), None, None, []))
    monkeypatch.setattr(bench, "bench_augmentation", fake_augmentation)
    monkeypatch.setattr(bench, "bench_throughput", fake_throughput)
    monkeypatch.setattr(bench, "bench_loop_overhead", fake_loop)
    monkeypatch.setattr(bench, "run_variants", lambda *a: pytest.fail("a variant ran"))
    r = bench.main(["--quick", "--device", "cpu", "--precision", "fp32"])
    assert asked == {"augmentation": 50_000, "throughput": (1, 3), "loop": 10 * 512}
    assert [row[0] for row in r["rows"]] == ["aug"] * 3 + ["step"] * 2 + ["loop", "recipe 24 epochs (CUDA only)",
                                                                          "peak CPU RSS"]
    assert set(r) == {"argv", "date", "runtime", "seconds", "rows"}
    assert capsys.readouterr().out.splitlines()[0].startswith("bench.py on cpu (")
