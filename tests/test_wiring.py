"""Every setting of train.Config reaches the code that uses it.

Checked on what the trainer passed, set or recorded (the data it loaded, the optimizer as built,
the LR set before every step, the batches and the loss of every step, the model's mode while it
evaluates, what the report was drawn from, the timings' arithmetic), never on an accuracy.

WIRED lists, for each Config field, the tests that fail when the trainer ignores that field or
passes a wrong value; test_every_config_field_has_a_wiring_test fails for a field with none.
A new field: write its test and register it with @wires("field") (a test in another file goes
in ELSEWHERE as "file.py::test_name").
"""
import ast
import dataclasses
import itertools
import os

import pytest
import torch
import torch.nn.functional as F

import data as cifar
import lr_finder
import train
import utils
from custom_resnet import CustomResNet
from test_train import torch_one_cycle_lrs      # the reference schedule: torch's OneCycleLR
from utils import UsageError

TESTS = os.path.dirname(os.path.abspath(__file__))
WIRED = {}          # Config field -> names of the tests in this file that pin its wiring


def wires(*fields):
    """Register the decorated test as one that fails when any of `fields` is not wired."""
    def register(test):
        for f in fields:
            WIRED.setdefault(f, []).append(test.__name__)
        return test
    return register


# Fields whose wiring is pinned by a test in another file.
ELSEWHERE = {
    "resume": ["test_reliability.py::test_resume_after_any_epoch_is_bit_identical_to_an_uninterrupted_run",
               "test_reliability.py::test_ctrl_c_at_a_chosen_step_keeps_the_last_checkpoint_and_says_how_to_resume"],
    "plots": ["test_reliability.py::test_resume_after_any_epoch_is_bit_identical_to_an_uninterrupted_run"],
    "lr_min": ["test_train.py::test_a_short_synthetic_run_learns_and_writes_metrics_and_weights",
               "test_train.py::test_one_given_lr_sets_the_other_by_the_factor"],
    "lr_max": ["test_train.py::test_a_short_synthetic_run_learns_and_writes_metrics_and_weights",
               "test_train.py::test_one_given_lr_sets_the_other_by_the_factor"],
    "lr_min_factor": ["test_train.py::test_one_given_lr_sets_the_other_by_the_factor"],
    "compile": ["test_train.py::test_compile_warm_up_leaves_no_trace"],
    "precision": ["test_train.py::test_fp16_with_a_grad_scaler_trains"],
    "seed": ["test_train.py::test_the_same_seed_gives_bit_identical_cpu_fp32_runs"],
    "tta": ["test_predict.py::test_flip_tta_in_training_is_the_mean_of_both_logits"],
    "gradcam_layer": ["test_predict.py::test_the_layer_setting_reaches_the_report"],
    "seeds": ["test_seeds.py::test_a_series_runs_each_seed_with_its_own_range_test_and_resumes_where_it_stopped"],
}

# One run in which every setting it exercises differs from its default, so a trainer that ignored
# one (and used the default) or passed another's value would be seen. LRMIN and LRMAX are found by
# a range test with its own settings. 136 training images make 4 steps of 32 and leave 8 over;
# 100 test images make evaluation batches of 48, 48 and 4.
ALTERED = dict(synthetic=True, synthetic_train=136, synthetic_test=100, batch_size=32, eval_batch_size=48,
               epochs=3, peak_epoch=1.5, momentum=0.8, nesterov=False, weight_decay=1e-3, label_smoothing=0.1,
               pad_mode="zeros", cutout=5, cutout_inside=True, bn_weight_decay=False, width=8, seed=7, log_every=3, device="cpu", precision="fp32",
               progress=False, plots=True,
               lr_test_iters=6, lr_test_start=2e-3, lr_test_end=0.6, lr_backoff=3.0, lr_min_factor=7.0,
               lr_rise=0.2)
STEPS_PER_EPOCH = 136 // 32
EVAL_BATCHES = [48, 48, 4]
PLOTS = ("plot_curves", "plot_lr_schedule", "plot_confusion", "plot_misclassified", "plot_gradcam")


class Spy:
    """Installs recorders around the pieces train.main wires together, and keeps what they saw.

    steps: one dict per train_step (the LR of every param group when the step began, the batch,
    the logits and the loss); forwards: (phase, model.training, batch size) of every forward
    pass inside a train_step ("train") or an evaluate ("eval"); built: (model, optimizer) of each
    build; epochs: the keywords of each train_one_epoch; plots: name -> list of (args, kwargs),
    the pictures are not drawn; range_tests: (batches, kwargs) of each lr_range_test; timer:
    each DeviceTimer.stop() returns 1, 2, 3, ... seconds in turn."""

    def __init__(self, mp, timer=True):
        self.steps, self.forwards, self.built, self.epochs, self.range_tests = [], [], [], [], []
        self.runtimes, self.plots, self.phase = [], {name: [] for name in PLOTS + ("plot_range_test",)}, None
        spy = self

        class RecordingResNet(CustomResNet):
            def forward(self, x):
                spy.forwards.append((spy.phase, self.training, len(x)))
                return super().forward(x)

        def during(phase, fn):
            def wrapped(*args, **kwargs):
                spy.phase = phase
                try:
                    return fn(*args, **kwargs)
                finally:
                    spy.phase = None
            return wrapped

        train_step = during("train", train.train_step)

        def recording_step(model, x, y, optimizer, scaler, autocast, loss_fn):
            lrs = [g["lr"] for g in optimizer.param_groups]
            logits, loss = train_step(model, x, y, optimizer, scaler, autocast, loss_fn)
            spy.steps.append(dict(lrs=lrs, x=x.clone(), y=y.clone(), logits=logits.float(), loss=loss.float()))
            return logits, loss

        def recording(name, fn, store):
            def wrapped(*args, **kwargs):
                store.append(kwargs if name == "epoch" else (args, kwargs))
                return fn(*args, **kwargs)
            return wrapped

        build, epoch, range_test, pick = train.build, train.train_one_epoch, lr_finder.lr_range_test, utils.pick_runtime

        def recording_build(cfg, rt):
            model, optimizer, scaler = build(cfg, rt)
            spy.built.append((model, optimizer))
            return model, optimizer, scaler

        def recording_range_test(model, optimizer, loss_fn, batches, **kwargs):
            spy.range_tests.append((batches, kwargs))
            return range_test(model, optimizer, loss_fn, batches, **kwargs)

        mp.setattr(train, "CustomResNet", RecordingResNet)
        mp.setattr(train, "train_step", recording_step)
        mp.setattr(train, "evaluate", during("eval", train.evaluate))
        mp.setattr(train, "build", recording_build)
        mp.setattr(train, "train_one_epoch", recording("epoch", epoch, self.epochs))
        mp.setattr(train.lr_finder, "lr_range_test", recording_range_test)
        mp.setattr(utils, "pick_runtime", recording("runtime", pick, self.runtimes))
        for name in PLOTS:
            mp.setattr(utils, name, recording(name, lambda *a, **k: None, self.plots[name]))
        mp.setattr(lr_finder, "plot_range_test",
                   recording("range", lambda *a, **k: None, self.plots["plot_range_test"]))
        if timer:
            mp.setattr(utils, "DeviceTimer", FakeTimer)
            FakeTimer.clock = itertools.count(1)


class FakeTimer:
    """A DeviceTimer whose k-th stop() in a run returns k seconds: timings with known values."""
    clock = itertools.count(1)

    def __init__(self, device):
        pass

    def start(self):
        return self

    def stop(self):
        return float(next(FakeTimer.clock))


@pytest.fixture(scope="module")
def altered(tmp_path_factory):
    out = tmp_path_factory.mktemp("altered")
    with pytest.MonkeyPatch.context() as mp:
        spy = Spy(mp)
        record = train.main(**ALTERED, out_dir=str(out))
    return record, spy, out


def reference_predictions(weights_path, width, images):
    """(predicted class, softmax probability of it) of every image by the saved weights,
    computed here with a plain NCHW fp32 model in eval mode, apart from train.evaluate."""
    model = CustomResNet(width=width)
    model.load_state_dict(torch.load(weights_path, weights_only=True))
    model.eval()
    mean = torch.tensor(cifar.CIFAR10_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(cifar.CIFAR10_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        conf, pred = model((images.float() / 255 - mean) / std).softmax(-1).max(-1)
    return model, pred, conf


# ----------------------------------------------------------------------------------------------
# The registry

def test_every_config_field_has_a_wiring_test():
    fields = [f.name for f in dataclasses.fields(train.Config)]
    missing = [f for f in fields if f not in WIRED and f not in ELSEWHERE]
    assert not missing, (f"Config fields with no wiring test: {missing}. Write a test that fails when the "
                         "trainer ignores the field, and register it with @wires(...) in tests/test_wiring.py")
    stale = (set(WIRED) | set(ELSEWHERE)) - set(fields)
    assert not stale, f"registered fields that Config no longer has: {stale}"
    for field, ids in ELSEWHERE.items():          # the named tests exist
        for node in ids:
            file, name = node.split("::")
            tree = ast.parse(open(os.path.join(TESTS, file)).read())
            assert name in {f.name for f in tree.body if isinstance(f, ast.FunctionDef)}, node


def test_the_altered_run_differs_from_every_default_it_sets():
    defaults = train.Config()
    # plots=True is the default: the report needs it; plots=False is the resumed run's below.
    same = [k for k, v in ALTERED.items() if k != "plots" and getattr(defaults, k) == v]
    assert not same, f"ALTERED sets {same} to the default: a trainer ignoring them would pass"


# ----------------------------------------------------------------------------------------------
# Data: where it comes from and how much of it

@wires("synthetic", "synthetic_train", "synthetic_test", "seed")
def test_synthetic_data_is_the_generators_at_the_given_sizes_and_seed():
    d = train.load_data(train.make_config(dict(synthetic=True, synthetic_train=40, synthetic_test=12, seed=5)))
    ref = cifar.synthetic_cifar10(40, 12, seed=5)
    for got, want in zip(d[:4], ref[:4]):
        assert torch.equal(got, want)
    assert not torch.equal(cifar.synthetic_cifar10(40, 12, seed=6).train_images, ref.train_images)


@wires("data_dir", "subset", "synthetic")
def test_cifar_is_read_from_data_dir_and_subset_keeps_the_first_images(tmp_path):
    from cifar_files import write_cifar_folder
    train_x, train_y, test_x, test_y = write_cifar_folder(tmp_path, n_per_batch=4)
    cfg = dict(data_dir=str(tmp_path), download=False)
    d = train.load_data(train.make_config(cfg))
    assert torch.equal(d.train_images, torch.from_numpy(train_x).view(-1, 3, 32, 32))
    assert torch.equal(d.test_labels, torch.from_numpy(test_y))
    d = train.load_data(train.make_config({**cfg, "subset": 6}))
    assert torch.equal(d.train_images, torch.from_numpy(train_x[:6]).view(-1, 3, 32, 32))
    assert torch.equal(d.train_labels, torch.from_numpy(train_y[:6]))
    assert torch.equal(d.test_images, torch.from_numpy(test_x[:6]).view(-1, 3, 32, 32))   # 4: all of them


@wires("download")
def test_the_download_is_tried_only_when_allowed(tmp_path, monkeypatch):
    from cifar_files import write_cifar_folder
    asked = []

    def fake_download(root):
        asked.append(root)
        write_cifar_folder(root, n_per_batch=2)
    monkeypatch.setattr(cifar, "download_cifar10", fake_download)
    with pytest.raises(UsageError, match="CIFAR-10 not found"):
        train.load_data(train.make_config(dict(data_dir=str(tmp_path / "a"), download=False)))
    assert asked == []
    d = train.load_data(train.make_config(dict(data_dir=str(tmp_path / "b"), download=True)))
    assert asked == [str(tmp_path / "b")] and len(d.train_labels) == 10


# ----------------------------------------------------------------------------------------------
# The model and the optimizer as built

def weight_decay_of(model, optimizer):
    """{parameter name: the weight decay its optimizer group applies}; every parameter in one group."""
    group_of = {id(p): g for g in optimizer.param_groups for p in g["params"]}
    assert len(group_of) == len(list(model.parameters())) == sum(len(g["params"]) for g in optimizer.param_groups)
    return {name: group_of[id(p)]["weight_decay"] for name, p in model.named_parameters()}


@wires("momentum", "nesterov", "weight_decay", "width", "lr_min", "bn_weight_decay")
@pytest.mark.parametrize("settings", [{}, {k: ALTERED[k] for k in ("momentum", "nesterov", "weight_decay", "width",
                                                                    "bn_weight_decay")}])
def test_the_optimizer_and_model_are_built_with_the_given_settings(settings):
    cfg = train.make_config({"lr_min": 0.03, "lr_max": 0.3, **settings})
    model, optimizer, _ = train.build(cfg, utils.pick_runtime("cpu", "fp32"))
    assert type(optimizer) is torch.optim.SGD
    assert model.prep.conv.weight.shape[0] == cfg.width
    for group in optimizer.param_groups:
        assert (group["momentum"], group["nesterov"]) == (cfg.momentum, cfg.nesterov)
        assert group["lr"] == cfg.lr_min and not group["maximize"] and group["dampening"] == 0
    decay = weight_decay_of(model, optimizer)
    bn = {n for n, m in model.named_modules() if isinstance(m, torch.nn.BatchNorm2d)}
    for name, wd in decay.items():
        is_bn = name.rsplit(".", 1)[0] in bn
        assert wd == (0.0 if is_bn and not cfg.bn_weight_decay else cfg.weight_decay), name
    assert sum(n.rsplit(".", 1)[0] in bn for n in decay) == 2 * len(bn) == 16   # weight and bias of 8 BNs


@wires("momentum", "nesterov", "weight_decay", "width", "out_dir", "bn_weight_decay")
def test_the_run_trains_the_optimizer_and_model_it_was_given(altered):
    record, spy, out = altered
    (model, optimizer), = spy.built
    for group in optimizer.param_groups:
        assert (group["momentum"], group["nesterov"]) == (0.8, False)
    decay = weight_decay_of(model, optimizer)
    assert decay["prep.conv.weight"] == decay["fc.weight"] == 1e-3 and decay["prep.bn.weight"] == 0.0
    ckpt = torch.load(out / "checkpoint.pt", weights_only=True)
    assert [(g["momentum"], g["nesterov"], g["weight_decay"]) for g in ckpt["optimizer"]["param_groups"]] == [
        (0.8, False, 1e-3), (0.8, False, 0.0)]
    assert ckpt["config"]["width"] == 8 and ckpt["model"]["prep.conv.weight"].shape[0] == 8
    weights = torch.load(out / "model.pt", weights_only=True)
    assert all(torch.equal(weights[k], v.cpu()) for k, v in model.state_dict().items())
    assert {"metrics.json", "checkpoint.pt", "model.pt"} <= set(os.listdir(out))


# ----------------------------------------------------------------------------------------------
# Every step: its LR, its batch, its loss

@wires("epochs", "peak_epoch", "batch_size")
def test_the_lr_set_before_every_step_is_the_recorded_one_cycle_schedule(altered):
    record, spy, _ = altered
    total = 3 * STEPS_PER_EPOCH
    assert record["steps_per_epoch"] == STEPS_PER_EPOCH and len(spy.steps) == total
    assert all(len(s["y"]) == 32 for s in spy.steps)
    used = [s["lrs"] for s in spy.steps]
    assert used == [[lr] * len(used[0]) for lr in record["lr_schedule"]]        # every group, every step
    ref = torch_one_cycle_lrs(total, record["lr_min"], record["lr_max"], 1.5 / 3)
    assert record["lr_schedule"] == pytest.approx(ref, rel=1e-9, abs=1e-12)
    assert [h["lr"] for h in record["history"]] == [record["lr_schedule"][e * STEPS_PER_EPOCH - 1] for e in (1, 2, 3)]


@wires("pad_mode", "cutout", "cutout_inside", "seed", "batch_size", "synthetic_train")
def test_the_training_batches_are_the_loaders_with_the_given_augmentation(altered):
    _, spy, _ = altered
    d = cifar.synthetic_cifar10(136, 100, seed=7)

    def batches(**kw):
        loader = cifar.DeviceLoader(d.train_images, d.train_labels, 32, train=True, device="cpu",
                                    seed=kw.pop("seed", 7), **kw)
        return [b for _ in range(3) for b in loader]          # 3 passes, as 3 epochs
    # The range test ran first on its own draws: the training passes are still 0, 1, 2.
    expected = batches(pad_mode="zeros", cutout=5, cutout_inside=True)
    assert len(expected) == len(spy.steps)
    for (x, y), step in zip(expected, spy.steps):
        assert torch.equal(step["x"], x) and torch.equal(step["y"], y)
    # Each setting changes the batches, so the equality above pins it.
    first = spy.steps[0]["x"]
    others = (dict(pad_mode="reflect", cutout=5, cutout_inside=True), dict(pad_mode="zeros", cutout=8, cutout_inside=True),
              dict(pad_mode="zeros", cutout=5, seed=0, cutout_inside=True), dict(pad_mode="zeros", cutout=5))
    for other in others:
        assert not torch.equal(batches(**other)[0][0], first), other


@wires("label_smoothing")
def test_the_loss_is_cross_entropy_with_the_given_label_smoothing(altered):
    _, spy, _ = altered
    for s in spy.steps:
        smoothed = F.cross_entropy(s["logits"], s["y"], label_smoothing=0.1)
        assert s["loss"].item() == pytest.approx(smoothed.item(), rel=1e-5)
    s = spy.steps[-1]
    assert s["loss"].item() != pytest.approx(F.cross_entropy(s["logits"], s["y"]).item(), rel=1e-3)


@wires("ema_epochs")
def test_the_weight_average_is_what_is_evaluated_and_saved(tmp_path, monkeypatch):
    """--ema-epochs E: after every step avg <- d avg + (1 - d) w, d = exp(-1 / (E * steps per
    epoch)), from the weights training starts with; the average (BatchNorm statistics included)
    is what each epoch evaluates and what model.pt holds. Recomputed here from the weights after
    every step of the same run (training itself is untouched by the average)."""
    cfg = dict(synthetic=True, synthetic_train=136, synthetic_test=100, batch_size=32, epochs=2, peak_epoch=1,
               width=8, precision="fp32", device="cpu", progress=False, plots=False, lr_min=0.02, lr_max=0.2,
               ema_epochs=0.75)
    after_step, step = [], train.train_step

    def recording(model, *args):
        if not after_step:
            after_step.append({k: v.clone() for k, v in model.state_dict().items()})    # the start
        out = step(model, *args)
        after_step.append({k: v.clone() for k, v in model.state_dict().items()})
        return out
    evaluated, real_evaluate = [], train.evaluate
    monkeypatch.setattr(train, "train_step", recording)
    monkeypatch.setattr(train, "evaluate", lambda model, *a: evaluated.append(
        {k: v.clone() for k, v in model.state_dict().items()}) or real_evaluate(model, *a))
    record = train.main(**cfg, out_dir=str(tmp_path))
    d = torch.exp(torch.tensor(-1 / (0.75 * STEPS_PER_EPOCH), dtype=torch.float64)).item()
    average = dict(after_step[0])
    by_epoch = []
    for i, w in enumerate(after_step[1:], start=1):
        average = {k: (d * average[k] + (1 - d) * w[k]) if w[k].is_floating_point() else w[k] for k in w}
        if i % STEPS_PER_EPOCH == 0:
            by_epoch.append(average)
    assert len(after_step) == 1 + 2 * STEPS_PER_EPOCH and len(evaluated) == 2
    for got, want in zip(evaluated, by_epoch):
        for k in want:
            torch.testing.assert_close(got[k], want[k], rtol=1e-5, atol=1e-6, msg=k)
    saved = torch.load(tmp_path / "model.pt", weights_only=True)
    for k in saved:
        torch.testing.assert_close(saved[k], by_epoch[-1][k], rtol=1e-5, atol=1e-6, msg=k)
    # not the trained weights: the average really is what was evaluated and saved
    assert (saved["layer3.conv.conv.weight"] - after_step[-1]["layer3.conv.conv.weight"]).abs().max() > 1e-4
    assert record["history"][-1]["test_correct"] == real_evaluate(
        _model_with(saved), cifar.DeviceLoader(*train.load_data(train.make_config(cfg))[2:4], 1000, train=False,
                                               device="cpu"), utils.pick_runtime("cpu", "fp32"))["correct"]


def _model_with(state):
    model = CustomResNet(width=8).to(memory_format=torch.channels_last)
    model.load_state_dict(state)
    return model


@wires("device", "precision")
def test_the_runtime_is_the_one_asked_for(altered):
    record, spy, _ = altered
    assert [args for args, _ in spy.runtimes] == [("cpu", "fp32")]
    assert record["runtime"]["device"] == "cpu" and record["runtime"]["precision"] == "fp32"
    assert all(s["logits"].dtype == torch.float32 for s in spy.steps)


@wires("log_every", "progress")
def test_the_epoch_loop_gets_log_every_and_progress(altered):
    _, spy, _ = altered
    assert len(spy.epochs) == 3
    assert all(kw["log_every"] == 3 and kw["progress"] is False for kw in spy.epochs)


@wires("log_every")
@pytest.mark.parametrize("log_every, steps_run", [(1, 3), (4, 4), (10, 8)])
def test_a_non_finite_loss_is_noticed_at_the_first_read_after_it(log_every, steps_run):
    """The loss of step 2 (0-based) is NaN; the loop reads the device flag every log_every steps
    and at the end of the epoch (8 steps), so it stops after the first read at or after step 2."""
    d = cifar.synthetic_cifar10(64, 8)
    loader = cifar.DeviceLoader(d.train_images, d.train_labels, 8, train=True, device="cpu")
    model = CustomResNet(width=4)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    rt = utils.pick_runtime("cpu", "fp32")
    calls = []

    def loss_fn(logits, y):
        calls.append(1)
        return F.cross_entropy(logits, y) * (float("nan") if len(calls) == 3 else 1.0)
    with pytest.raises(FloatingPointError, match="^12$"):      # first_step 10 + 2
        train.train_one_epoch(model, loader, optimizer, rt.grad_scaler(), rt, loss_fn, lambda s: 0.01, 10,
                              log_every=log_every, progress=False)
    assert len(calls) == steps_run


# ----------------------------------------------------------------------------------------------
# Evaluation

@wires("eval_batch_size", "synthetic_test")
def test_evaluation_runs_in_eval_mode_on_every_test_image_and_training_in_train_mode(altered):
    record, spy, _ = altered
    evaluated = [(training, n) for phase, training, n in spy.forwards if phase == "eval"]
    trained = [(training, n) for phase, training, n in spy.forwards if phase == "train"]
    assert evaluated == [(False, n) for n in EVAL_BATCHES * 3]        # 100 images after each epoch
    assert trained == [(True, 32)] * (3 * STEPS_PER_EPOCH)
    assert [h["test_n"] for h in record["history"]] == [100] * 3


def test_evaluate_equals_a_plain_computation_and_leaves_the_model_alone():
    torch.manual_seed(0)
    model = CustomResNet(width=4)
    model.train()
    for m in model.modules():                       # running statistics unlike a batch's own
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    d = cifar.synthetic_cifar10(8, 50, seed=3)
    loader = cifar.DeviceLoader(d.test_images, d.test_labels, 16, train=False, device="cpu")
    ev = train.evaluate(model, loader, utils.pick_runtime("cpu", "fp32"))
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())   # no BN update
    mean = torch.tensor(cifar.CIFAR10_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(cifar.CIFAR10_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        logits = model.eval()((d.test_images.float() / 255 - mean) / std)
    conf, pred = logits.softmax(-1).max(-1)
    assert ev["n"] == 50 and torch.equal(ev["preds"], pred)
    assert ev["correct"] == int((pred == d.test_labels).sum())
    assert ev["loss"] == pytest.approx(F.cross_entropy(logits, d.test_labels).item(), rel=1e-5)
    assert torch.allclose(ev["confidences"], conf, atol=1e-6)


# ----------------------------------------------------------------------------------------------
# The report: what each picture was drawn from

@wires("plots", "out_dir")
def test_the_report_draws_the_runs_own_records_into_out_dir(altered):
    record, spy, out = altered
    assert all(len(spy.plots[name]) == 1 for name in PLOTS), {k: len(v) for k, v in spy.plots.items()}
    for name in PLOTS:
        args, kwargs = spy.plots[name][0]
        path = args[-1] if isinstance(args[-1], str) else kwargs.get("path")
        assert os.path.dirname(path) == str(out), name
    (history, _), _ = spy.plots["plot_curves"][0]
    assert history == record["history"]
    (lrs, spe, _), kwargs = spy.plots["plot_lr_schedule"][0]
    assert lrs == record["lr_schedule"] and spe == STEPS_PER_EPOCH and kwargs["lr_max"] == record["lr_max"]


def test_the_gallery_is_every_mistake_most_confident_first(altered):
    record, spy, out = altered
    d = cifar.synthetic_cifar10(136, 100, seed=7)
    _, pred, conf = reference_predictions(out / "model.pt", 8, d.test_images)
    wrong = set((pred != d.test_labels).nonzero().flatten().tolist())
    assert len(wrong) == 100 - record["test_correct"] > 10
    (images, labels, preds, confs, classes, _), _ = spy.plots["plot_misclassified"][0]
    assert classes == d.classes and len(images) == len(wrong)
    assert torch.all(confs[:-1] >= confs[1:]), "not sorted most confident first"
    index = {bytes(img.flatten().tolist()): i for i, img in enumerate(d.test_images)}   # images are distinct
    shown = [index[bytes(img.flatten().tolist())] for img in images]
    assert set(shown) == wrong
    assert labels.tolist() == d.test_labels[shown].tolist() and preds.tolist() == pred[shown].tolist()
    assert torch.allclose(confs, conf[shown], atol=1e-5)


def test_grad_cam_explains_the_first_ten_mistakes_for_the_predicted_and_the_true_class(altered):
    import gradcam
    _, spy, out = altered
    (images, labels, preds, _, _, _), _ = spy.plots["plot_misclassified"][0]
    (cam_images, cams_pred, cams_true, cam_labels, cam_preds, _, _), _ = spy.plots["plot_gradcam"][0]
    assert torch.equal(cam_images, images[:10]) and torch.equal(cam_labels, labels[:10])
    assert torch.equal(cam_preds, preds[:10])
    model, _, _ = reference_predictions(out / "model.pt", 8, images[:1])
    mean = torch.tensor(cifar.CIFAR10_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(cifar.CIFAR10_STD).view(1, 3, 1, 1)
    x = (images[:10].float() / 255 - mean) / std
    with gradcam.GradCAM(model, "layer3") as cam:
        ref_pred, ref_true = cam(x, preds[:10]), cam(x, labels[:10])
    assert cams_pred.shape == (10, 32, 32)
    assert torch.allclose(cams_pred, ref_pred, atol=1e-3) and torch.allclose(cams_true, ref_true, atol=1e-3)
    assert not torch.allclose(cams_pred, cams_true, atol=1e-3)      # so the order is pinned


def test_per_class_accuracy_and_confusion_are_of_the_final_predictions(altered):
    record, spy, out = altered
    d = cifar.synthetic_cifar10(136, 100, seed=7)
    _, pred, _ = reference_predictions(out / "model.pt", 8, d.test_images)
    y = d.test_labels
    expected = {name: 100.0 * float((pred[y == c] == c).float().mean()) for c, name in enumerate(d.classes)}
    assert record["per_class_accuracy"] == pytest.approx(expected)
    (cm, classes, _), _ = spy.plots["plot_confusion"][0]
    assert classes == d.classes
    for t in range(10):
        for p in range(10):
            assert int(cm[t, p]) == int(((y == t) & (pred == p)).sum()), (t, p)
    assert record["test_correct"] == int((pred == y).sum())


def test_the_timings_add_up(altered):
    """The fake timer's stops return 1, 2, 3, ... s: epoch e trained 2e - 1 s and evaluated 2e s."""
    record, _, _ = altered
    h, t = record["history"], record["timings"]
    assert [e["train_seconds"] for e in h] == [1.0, 3.0, 5.0]
    assert [e["eval_seconds"] for e in h] == [2.0, 4.0, 6.0]
    assert t["train_seconds"] == 9.0 and t["eval_seconds"] == 12.0
    assert t["images_per_second"] == pytest.approx(3 * STEPS_PER_EPOCH * 32 / 9.0)   # full batches only
    assert t["compile_seconds"] == 0 and 0 < t["lr_test_seconds"] < t["total_seconds"]


# ----------------------------------------------------------------------------------------------
# The range test's settings, and its own draws

def lrs_at_first_minimum(found, rise):
    return found["lrs"][lr_finder.first_minimum(found["smoothed"], rise)]


@wires("lr_test_iters", "lr_test_start", "lr_test_end", "lr_backoff", "lr_min_factor", "lr_rise")
def test_the_range_test_gets_its_settings_and_its_lrs_are_trained_with(altered):
    record, spy, out = altered
    (batches, kwargs), = spy.range_tests
    assert (kwargs["num_iter"], kwargs["start_lr"], kwargs["end_lr"]) == (6, 2e-3, 0.6)
    assert (kwargs["backoff"], kwargs["min_factor"], kwargs["rise"]) == (3.0, 7.0, 0.2)
    assert record["lr_max"] == lrs_at_first_minimum(record["lr_range_test"], 0.2) / 3.0
    found = record["lr_range_test"]
    lrs = found["lrs"]
    assert 2 <= len(lrs) <= 6 and lrs == pytest.approx([2e-3 * 300 ** (i / 5) for i in range(len(lrs))])
    assert (record["lr_min"], record["lr_max"]) == (found["lr_min"], found["lr_max"])
    assert record["lr_source"] == "range test"
    (result, path), _ = spy.plots["plot_range_test"][0]
    assert result.lr_max == record["lr_max"] and path == str(out / "lr_range_test.png")


def test_the_range_test_draws_its_own_batches(altered):
    """Not the training loader's: its draws would shift the training data order (which
    test_the_training_batches_are_the_loaders_with_the_given_augmentation pins)."""
    _, spy, _ = altered
    (batches, _), = spy.range_tests
    _, y0 = next(iter(batches.reseeded(batches.seed)))    # the range test's first batch
    assert all(not torch.equal(y0, spy.steps[e * STEPS_PER_EPOCH]["y"]) for e in range(3))
