"""A whole run, end to end: every setting of train.Config reaches the code that uses it.

Checked on what a run was given, did and recorded, seen through PyTorch's own global hooks
(conftest.Watch: every forward of the network, every loss, every optimizer step) and through
the files it writes, never by replacing a function of train.py and never on an accuracy.

WIRED lists, for each Config field, the tests of this file that fail when the run ignores that
field or passes a wrong value; test_every_setting_has_a_wiring_test fails for a field with none.
"""
import dataclasses
import json
import os

import pytest
import torch
import torch.nn.functional as F

import data as cifar
import lr_finder
import plots
import train
import utils
from conftest import Watch, interrupted_at
from custom_resnet import CustomResNet
from test_train import torch_one_cycle_lrs      # the reference schedule: torch's OneCycleLR
from utils import UsageError

WIRED = {}          # Config field -> names of the tests in this file that pin its wiring


def wires(*fields):
    """Register the decorated test as one that fails when any of `fields` is not wired."""
    def register(test):
        for f in fields:
            WIRED.setdefault(f, []).append(test.__name__)
        return test
    return register


# One run in which every setting it exercises differs from its default, so a run that ignored one
# (and used the default) or passed another's value would be seen. LRMIN and LRMAX are found by a
# range test with its own settings. 136 training images make 4 steps of 32 and leave 8 over; 100
# test images make evaluation batches of 48, 48 and 4.
ALTERED = dict(synthetic=True, synthetic_train=136, synthetic_test=100, batch_size=32, eval_batch_size=48,
               epochs=3, peak_epoch=1.5, momentum=0.8, nesterov=False, weight_decay=1e-3, label_smoothing=0.1,
               pad_mode="zeros", cutout=5, cutout_inside=True, bn_weight_decay=False, width=8, seed=7, log_every=3,
               device="cpu", precision="fp32", progress=False, plots=True, gradcam_layer="layer1", misclassified=7,
               lr_test_iters=6, lr_test_start=2e-3, lr_test_end=0.6, lr_backoff=3.0, lr_min_factor=7.0,
               lr_rise=0.2)
STEPS_PER_EPOCH = 136 // 32
EVAL_BATCHES = [48, 48, 4]
TINY = dict(synthetic=True, synthetic_train=256, synthetic_test=64, width=8, batch_size=64, eval_batch_size=64,
            precision="fp32", device="cpu", progress=False, plots=False, epochs=2, peak_epoch=1,
            lr_min=0.02, lr_max=0.2)
ONE_EPOCH = {**TINY, "epochs": 1, "peak_epoch": 1}
DRAWN = ("plot_misclassified", "plot_gradcam")


@pytest.fixture(scope="module")
def altered(tmp_path_factory):
    """The ALTERED run, watched; the two gallery pictures' arguments recorded as they are drawn."""
    out = tmp_path_factory.mktemp("altered")
    drawn = {name: [] for name in DRAWN}
    with pytest.MonkeyPatch.context() as mp, Watch() as watch:
        for name in DRAWN:
            real = getattr(plots, name)
            mp.setattr(plots, name, lambda *a, _r=real, _n=name, **k: (drawn[_n].append((a, k)), _r(*a, **k))[1])
        record = train.main(**ALTERED, out_dir=str(out))
    n_test = len(record["lr_range_test"]["lrs"])          # the range test's steps come first
    return {"record": record, "watch": watch, "out": out, "drawn": drawn, "range_steps": n_test,
            "train": watch.of("train")[n_test:], "steps": watch.steps[n_test:],
            "losses": watch.losses[n_test:]}


def reference_predictions(weights_path, width, images):
    """(model, predicted class, its softmax probability) of every image by the saved weights,
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

def test_every_setting_has_a_wiring_test():
    fields = [f.name for f in dataclasses.fields(train.Config)]
    missing = [f for f in fields if f not in WIRED]
    assert not missing, (f"Config fields with no wiring test: {missing}. Write a test in tests/test_run.py "
                         "that fails when the run ignores the field, and register it with @wires(...)")
    assert not set(WIRED) - set(fields), f"registered fields that Config no longer has: {set(WIRED) - set(fields)}"


def test_the_altered_run_differs_from_every_default_it_sets():
    defaults = train.Config()
    same = [k for k, v in ALTERED.items() if k != "plots" and getattr(defaults, k) == v]   # plots: the report
    assert not same, f"ALTERED sets {same} to the default: a run ignoring them would pass"


# ----------------------------------------------------------------------------------------------
# Data: where it comes from and how much of it

@wires("synthetic", "synthetic_train", "synthetic_test", "seed")
def test_synthetic_data_is_the_generators_at_the_given_sizes_and_seed(altered):
    d = train.load_data(train.Config.from_keywords(dict(synthetic=True, synthetic_train=40, synthetic_test=12, seed=5)))
    ref = cifar.synthetic_cifar10(40, 12, seed=5)
    for got, want in zip(d[:4], ref[:4]):
        assert torch.equal(got, want)
    assert not torch.equal(cifar.synthetic_cifar10(40, 12, seed=6).train_images, ref.train_images)
    data = altered["record"]["data"]
    assert (data["source"], data["train_images"], data["test_images"]) == ("synthetic", 136, 100)


@wires("data_dir", "subset", "synthetic")
def test_cifar_is_read_from_data_dir_and_subset_keeps_the_first_images(tmp_path):
    from cifar_files import write_cifar_folder
    train_x, train_y, test_x, test_y = write_cifar_folder(tmp_path, n_per_batch=40)
    cfg = dict(data_dir=str(tmp_path), download=False)
    d = train.load_data(train.Config.from_keywords(cfg))
    assert torch.equal(d.train_images, torch.from_numpy(train_x).view(-1, 3, 32, 32))
    assert torch.equal(d.test_labels, torch.from_numpy(test_y))
    d = train.load_data(train.Config.from_keywords({**cfg, "subset": 6}))
    assert torch.equal(d.train_images, torch.from_numpy(train_x[:6]).view(-1, 3, 32, 32))
    assert torch.equal(d.train_labels, torch.from_numpy(train_y[:6]))
    assert torch.equal(d.test_images, torch.from_numpy(test_x[:6]).view(-1, 3, 32, 32))
    r = train.main(**{**TINY, "synthetic": False, "epochs": 1}, **cfg, subset=192, out_dir=str(tmp_path / "o"))
    assert (r["data"]["source"], r["data"]["train_images"], r["data"]["test_images"]) == ("cifar10", 192, 40)
    assert r["steps_per_epoch"] == 3


@wires("download")
def test_the_download_is_tried_only_when_allowed(tmp_path, monkeypatch):
    from cifar_files import write_cifar_folder
    asked = []

    def fake_download(root):
        asked.append(root)
        write_cifar_folder(root, n_per_batch=2)
    monkeypatch.setattr(cifar, "download_cifar10", fake_download)
    with pytest.raises(UsageError, match="CIFAR-10 not found"):
        train.load_data(train.Config.from_keywords(dict(data_dir=str(tmp_path / "a"), download=False)))
    assert asked == []
    d = train.load_data(train.Config.from_keywords(dict(data_dir=str(tmp_path / "b"), download=True)))
    assert asked == [str(tmp_path / "b")] and len(d.train_labels) == 10


# ----------------------------------------------------------------------------------------------
# The model and the optimizer

def weight_decay_of(model, optimizer):
    """{parameter name: the weight decay its optimizer group applies}; every parameter in one group."""
    group_of = {id(p): g for g in optimizer.param_groups for p in g["params"]}
    assert len(group_of) == len(list(model.parameters())) == sum(len(g["params"]) for g in optimizer.param_groups)
    return {name: group_of[id(p)]["weight_decay"] for name, p in model.named_parameters()}


@wires("momentum", "nesterov", "weight_decay", "width", "bn_weight_decay")
@pytest.mark.parametrize("settings", [{}, {k: ALTERED[k] for k in ("momentum", "nesterov", "weight_decay", "width",
                                                                    "bn_weight_decay")}])
def test_the_optimizer_and_model_are_built_with_the_given_settings(settings):
    cfg = train.Config.from_keywords({"lr_min": 0.03, "lr_max": 0.3, **settings})
    learner = train.build(cfg, utils.pick_runtime("cpu", "fp32"), steps_per_epoch=4)
    model, optimizer = learner.model, learner.optimizer
    assert type(optimizer) is torch.optim.SGD and learner.net is model and learner.average is None
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
def test_the_run_trains_with_the_optimizer_and_model_it_was_given(altered):
    steps, out = altered["steps"], altered["out"]
    optimizer = steps[0]["optimizer"]
    assert all(s["optimizer"] is optimizer for s in steps)                  # one optimizer, every step
    model = altered["train"][0]["module"]
    assert all(f["module"] is model for f in altered["train"])
    for group in optimizer.param_groups:
        assert (group["momentum"], group["nesterov"]) == (0.8, False)
    decay = weight_decay_of(model, optimizer)
    assert decay["prep.conv.weight"] == decay["fc.weight"] == 1e-3 and decay["prep.bn.weight"] == 0.0
    ckpt = torch.load(out / "checkpoint.pt", weights_only=True)
    assert [(g["momentum"], g["nesterov"], g["weight_decay"]) for g in ckpt["optimizer"]["param_groups"]] == [
        (0.8, False, 1e-3), (0.8, False, 0.0)]
    assert ckpt["config"]["width"] == 8 and model.prep.conv.weight.shape[0] == 8
    weights = torch.load(out / "model.pt", weights_only=True)
    assert all(torch.equal(weights[k], v.cpu()) for k, v in model.state_dict().items())
    assert {"metrics.json", "checkpoint.pt", "model.pt"} <= set(os.listdir(out))


# ----------------------------------------------------------------------------------------------
# Every step: its LR, its batch, its loss

@wires("epochs", "peak_epoch", "batch_size")
def test_the_lr_set_before_every_step_is_the_recorded_one_cycle_schedule(altered):
    record, steps = altered["record"], altered["steps"]
    total = 3 * STEPS_PER_EPOCH
    assert record["steps_per_epoch"] == STEPS_PER_EPOCH and len(steps) == total
    assert all(f["n"] == 32 for f in altered["train"])
    used = [s["lrs"] for s in steps]
    assert used == [[lr] * len(used[0]) for lr in record["lr_schedule"]]        # every group, every step
    ref = torch_one_cycle_lrs(total, record["lr_min"], record["lr_max"], 1.5 / 3)
    assert record["lr_schedule"] == pytest.approx(ref, rel=1e-9, abs=1e-12)
    assert [h["lr"] for h in record["history"]] == [record["lr_schedule"][e * STEPS_PER_EPOCH - 1] for e in (1, 2, 3)]


@wires("pad_mode", "cutout", "cutout_inside", "seed", "batch_size", "synthetic_train")
def test_the_training_batches_are_the_loaders_with_the_given_augmentation(altered):
    d = cifar.synthetic_cifar10(136, 100, seed=7)

    def batches(**kw):
        loader = cifar.DeviceLoader(d.train_images, d.train_labels, 32, train=True, device="cpu",
                                    seed=kw.pop("seed", 7), **kw)
        return [b for _ in range(3) for b in loader]          # 3 passes, as 3 epochs
    # The range test ran first on its own draws: the training passes are still 0, 1, 2.
    expected = batches(pad_mode="zeros", cutout=5, cutout_inside=True)
    assert len(expected) == len(altered["train"]) == len(altered["losses"])
    for (x, y), forward, loss in zip(expected, altered["train"], altered["losses"]):
        assert torch.equal(forward["x"], x) and torch.equal(loss["y"], y)
    # Each setting changes the batches, so the equality above pins it.
    first = altered["train"][0]["x"]
    others = (dict(pad_mode="reflect", cutout=5, cutout_inside=True), dict(pad_mode="zeros", cutout=8, cutout_inside=True),
              dict(pad_mode="zeros", cutout=5, seed=0, cutout_inside=True), dict(pad_mode="zeros", cutout=5))
    for other in others:
        assert not torch.equal(batches(**other)[0][0], first), other


@wires("label_smoothing")
def test_the_loss_is_cross_entropy_with_the_given_label_smoothing(altered):
    losses = altered["losses"]
    assert len(losses) == 3 * STEPS_PER_EPOCH and all(s["label_smoothing"] == 0.1 for s in losses)
    for s in losses:
        assert s["loss"].item() == pytest.approx(F.cross_entropy(s["logits"], s["y"], label_smoothing=0.1).item(),
                                                 rel=1e-5)
    s = losses[-1]
    assert s["loss"].item() != pytest.approx(F.cross_entropy(s["logits"], s["y"]).item(), rel=1e-3)
    h = altered["record"]["history"][0]            # the epoch's mean loss is that of its steps
    assert h["train_loss"] == pytest.approx(sum(s["loss"].item() for s in losses[:STEPS_PER_EPOCH]) / STEPS_PER_EPOCH,
                                            rel=1e-6)


@wires("ema_epochs")
def test_the_weight_average_is_what_is_evaluated_and_saved(tmp_path, watch):
    """--ema-epochs E: after every step avg <- d avg + (1 - d) w, d = exp(-1 / (E * steps per
    epoch)), from the weights training starts with; the average (BatchNorm statistics included)
    is what each epoch evaluates and what model.pt holds. Recomputed here from the weights after
    every step of the same run (training itself is untouched by the average)."""
    cfg = dict(TINY, synthetic_train=136, synthetic_test=100, batch_size=32, eval_batch_size=1000, ema_epochs=0.75)
    torch.manual_seed(0)                                      # the weights build() starts from
    after_step, evaluated = [CustomResNet(width=8).state_dict()], []
    watch.after_step.append(lambda optimizer: after_step.append(
        {k: v.clone() for k, v in watch.of("train")[-1]["module"].state_dict().items()}))
    watch.on_forward.append(lambda phase, count, module, out: evaluated.append(
        (module, {k: v.clone() for k, v in module.state_dict().items()})) if phase == "eval" else None)
    with watch:
        record = train.main(**cfg, out_dir=str(tmp_path))
    trained = watch.of("train")[0]["module"]
    assert all(module is not trained for module, _ in evaluated)            # the average's own copy
    evaluated = [state for _, state in evaluated]
    d = torch.exp(torch.tensor(-1 / (0.75 * STEPS_PER_EPOCH), dtype=torch.float64)).item()
    average, by_epoch = dict(after_step[0]), []
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
    model = CustomResNet(width=8).to(memory_format=torch.channels_last)
    model.load_state_dict(saved)
    d100 = train.load_data(train.Config.from_keywords(cfg))
    loader = cifar.DeviceLoader(d100.test_images, d100.test_labels, 1000, train=False, device="cpu")
    assert record["history"][-1]["test_correct"] == train.evaluate(model, loader, utils.pick_runtime("cpu", "fp32"))["correct"]


# ----------------------------------------------------------------------------------------------
# Device, precision, and what the host reads

@wires("device", "precision")
def test_the_runtime_is_the_one_asked_for(altered):
    record = altered["record"]
    assert record["runtime"]["device"] == "cpu" and record["runtime"]["precision"] == "fp32"
    assert all(s["logits"].dtype == torch.float32 for s in altered["losses"])


@wires("precision")
def test_fp16_trains_under_autocast_with_a_grad_scaler(tmp_path, watch):
    """The path Colab's T4 takes (fp16 autocast + GradScaler), here on the CPU: every step's
    logits are fp16, the scaler's state is checkpointed, and the weights move and stay finite."""
    with watch:
        r = train.main(**{**TINY, "precision": "fp16"}, out_dir=str(tmp_path))
    assert r["runtime"]["precision"] == "fp16"
    assert [s["logits"].dtype for s in watch.losses] == [torch.float16] * 8
    assert torch.load(tmp_path / "checkpoint.pt", weights_only=True)["scaler"]["scale"] > 0
    torch.manual_seed(0)                                     # the weights build() starts from
    start = CustomResNet(width=8).state_dict()
    trained = torch.load(tmp_path / "model.pt", weights_only=True)
    assert all(torch.isfinite(v).all() for v in trained.values() if v.is_floating_point())
    assert not torch.equal(trained["layer3.conv.conv.weight"], start["layer3.conv.conv.weight"])
    assert all(h["train_loss"] == h["train_loss"] for h in r["history"])       # no NaN


@wires("log_every")
@pytest.mark.parametrize("log_every, steps_run", [(1, 3), (4, 4), (10, 8)])
def test_a_non_finite_loss_is_noticed_at_the_first_read_after_it(tmp_path, watch, log_every, steps_run):
    """The logits of training step 2 (0-based) are NaN; the run reads the device's flag every
    log_every steps and at the end of the epoch (8 steps), so it stops after the first read at or
    after step 2, names that step, and keeps no checkpoint of it."""
    watch.on_forward.append(lambda phase, count, module, out: out * float("nan") if phase == "train" and count == 3
                            else None)
    with watch, pytest.raises(utils.Diverged, match="in epoch 1, at step 2 "):
        train.main(**{**TINY, "synthetic_train": 512}, log_every=log_every, out_dir=str(tmp_path))
    assert len(watch.of("train")) == steps_run
    assert not (tmp_path / "checkpoint.pt").exists()


@wires("progress")
@pytest.mark.parametrize("progress", [True, False])
def test_the_progress_bar_is_shown_when_asked(tmp_path, capsys, progress):
    train.main(**{**TINY, "epochs": 1, "peak_epoch": 1, "progress": progress}, out_dir=str(tmp_path))
    out, err = capsys.readouterr()
    assert ("Epoch 1/1 Loss=" in err) == progress and ("Batch_id=0 Accuracy=" in err) == progress
    # Without the bar the course's line still comes, once an epoch, at its last step (4 steps of 64).
    assert ("Epoch 1/1 Loss=" in out and "Batch_id=3 Accuracy=" in out) == (not progress)


# ----------------------------------------------------------------------------------------------
# Evaluation

@wires("eval_batch_size", "synthetic_test")
def test_evaluation_runs_in_eval_mode_on_every_test_image_and_training_in_train_mode(altered):
    record, watch = altered["record"], altered["watch"]
    assert [(f["training"], f["n"]) for f in watch.of("eval")] == [(False, n) for n in EVAL_BATCHES * 3]
    assert [(f["training"], f["n"]) for f in altered["train"]] == [(True, 32)] * (3 * STEPS_PER_EPOCH)
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


@wires("tta")
def test_flip_tta_evaluates_the_mean_of_the_logits_of_each_image_and_its_mirror(tmp_path):
    import predict
    record = train.main(**TINY, tta=True, out_dir=str(tmp_path))
    model = predict.load_model(tmp_path / "model.pt")
    images = cifar.synthetic_cifar10(256, 64).test_images
    rt = utils.Runtime(torch.device("cpu"), "fp32")
    plain, mirror = predict.logits(model, images, rt, batch_size=64), predict.logits(model, images.flip(-1), rt, batch_size=64)
    labels = cifar.synthetic_cifar10(256, 64).test_labels
    final = record["history"][-1]
    assert final["test_loss"] == pytest.approx(F.cross_entropy((plain + mirror) / 2, labels).item(), rel=1e-5)
    assert final["test_correct"] == int((((plain + mirror) / 2).argmax(1) == labels).sum())
    assert abs(final["test_loss"] - F.cross_entropy(plain, labels).item()) > 1e-4    # the flag reached it


# ----------------------------------------------------------------------------------------------
# The report: what each picture was drawn from

@wires("plots", "out_dir")
def test_the_pictures_are_drawn_into_out_dir_and_only_when_asked(altered, tmp_path):
    out = altered["out"]
    for name in ("curves.png", "lr_schedule.png", "confusion.png", "misclassified.png", "gradcam.png",
                 "lr_range_test.png"):
        assert (out / name).stat().st_size > 5_000, name
    assert all(len(v) == 1 for v in altered["drawn"].values())
    train.main(**TINY, out_dir=str(tmp_path))                              # plots=False
    assert not list(tmp_path.glob("*.png"))


@wires("misclassified")
def test_the_gallery_is_the_most_confident_mistakes_as_many_as_asked(altered):
    record, out = altered["record"], altered["out"]
    d = cifar.synthetic_cifar10(136, 100, seed=7)
    _, pred, conf = reference_predictions(out / "model.pt", 8, d.test_images)
    wrong = set((pred != d.test_labels).nonzero().flatten().tolist())
    assert len(wrong) == 100 - record["test_correct"] > 10
    (images, labels, preds, confs, classes, _), _ = altered["drawn"]["plot_misclassified"][0]
    assert classes == d.classes and len(images) == len(wrong)
    assert torch.all(confs[:-1] >= confs[1:]), "not sorted most confident first"
    index = {bytes(img.flatten().tolist()): i for i, img in enumerate(d.test_images)}   # images are distinct
    shown = [index[bytes(img.flatten().tolist())] for img in images]
    assert set(shown) == wrong
    assert labels.tolist() == d.test_labels[shown].tolist() and preds.tolist() == pred[shown].tolist()
    assert torch.allclose(confs, conf[shown], atol=1e-5)
    assert altered["drawn"]["plot_misclassified"][0][1]["max_images"] == 7
    assert [m["index"] for m in record["misclassified"]] == shown[:7] and record["misclassified_total"] == len(wrong)
    assert [m["label"] for m in record["misclassified"]] == [d.classes[int(c)] for c in labels[:7]]


@wires("gradcam_layer")
def test_grad_cam_explains_the_mistakes_shown_at_the_given_layer(altered):
    import gradcam
    (images, labels, preds, _, _, _), _ = altered["drawn"]["plot_misclassified"][0]
    (cam_images, cams_pred, cams_true, cam_labels, cam_preds, _, _), kwargs = altered["drawn"]["plot_gradcam"][0]
    assert torch.equal(cam_images, images[:7]) and torch.equal(cam_labels, labels[:7])
    assert torch.equal(cam_preds, preds[:7]) and kwargs["layer"] == "layer1, 16x16 map"
    assert altered["record"]["gradcam"] == {"layer": "layer1", "map_size": [16, 16]}
    model, _, _ = reference_predictions(altered["out"] / "model.pt", 8, images[:1])
    mean = torch.tensor(cifar.CIFAR10_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(cifar.CIFAR10_STD).view(1, 3, 1, 1)
    x = (images[:7].float() / 255 - mean) / std
    with gradcam.GradCAM(model, "layer1") as cam:
        ref_pred, ref_true = cam(x, preds[:7]), cam(x, labels[:7])
    assert cams_pred.shape == (7, 32, 32)
    assert torch.allclose(cams_pred, ref_pred, atol=1e-3) and torch.allclose(cams_true, ref_true, atol=1e-3)
    assert not torch.allclose(cams_pred, cams_true, atol=1e-3)      # so the order is pinned
    trained = altered["train"][0]["module"]
    explained = [f for f in altered["watch"].of("explain") if f["module"] is trained]
    assert [f["n"] for f in explained] == [7, 7] and all(not f["training"] for f in explained)


def test_per_class_accuracy_and_confusion_are_of_the_final_predictions(altered):
    record, out = altered["record"], altered["out"]
    d = cifar.synthetic_cifar10(136, 100, seed=7)
    _, pred, _ = reference_predictions(out / "model.pt", 8, d.test_images)
    y = d.test_labels
    expected = {name: 100.0 * float((pred[y == c] == c).float().mean()) for c, name in enumerate(d.classes)}
    assert record["per_class_accuracy"] == pytest.approx(expected)
    assert record["test_correct"] == int((pred == y).sum())


def test_the_timings_add_up(altered):
    record = altered["record"]
    h, t = record["history"], record["timings"]
    assert t["train_seconds"] == pytest.approx(sum(e["train_seconds"] for e in h))
    assert t["eval_seconds"] == pytest.approx(sum(e["eval_seconds"] for e in h))
    assert t["images_per_second"] == pytest.approx(3 * STEPS_PER_EPOCH * 32 / t["train_seconds"])   # full batches
    assert t["compile_seconds"] == 0 and 0 < t["lr_test_seconds"] < t["total_seconds"]
    assert t["train_seconds"] + t["eval_seconds"] + t["lr_test_seconds"] < t["total_seconds"]


# ----------------------------------------------------------------------------------------------
# The range test's settings, and its own draws

@wires("lr_test_iters", "lr_test_start", "lr_test_end", "lr_backoff", "lr_min_factor", "lr_rise")
def test_the_range_test_gets_its_settings_and_its_lrs_are_trained_with(altered):
    record, watch = altered["record"], altered["watch"]
    found = record["lr_range_test"]
    lrs = found["lrs"]
    # The LRs of the test's steps, as set before each: 2e-3 up to 0.6 in 6 exponential steps.
    assert 2 <= len(lrs) <= 6 and lrs == pytest.approx([2e-3 * 300 ** (i / 5) for i in range(len(lrs))])
    assert [s["lrs"][0] for s in watch.steps[:len(lrs)]] == pytest.approx(lrs)
    smooth = min(0.3, 5 / 6)                 # train.py's smoothing for a 6-step test
    for i in range(1, len(lrs)):
        assert found["smoothed"][i] == pytest.approx(smooth * found["losses"][i] + (1 - smooth) * found["smoothed"][i - 1])
    i = lr_finder.first_minimum(found["smoothed"], 0.2)
    assert record["lr_max"] == found["lr_max"] == lrs[i] / 3.0 and "rises 20%" in found["rule"]
    assert record["lr_min"] == pytest.approx(record["lr_max"] / 7.0)
    assert record["lr_source"] == "range test"
    assert (altered["out"] / "lr_range_test.png").stat().st_size > 5_000


def test_the_range_test_draws_its_own_batches(altered):
    """Not the training loader's: its draws would shift the training data order (which
    test_the_training_batches_are_the_loaders_with_the_given_augmentation pins)."""
    watch, n = altered["watch"], altered["range_steps"]
    range_batches = [f["x"] for f in watch.of("train")[:n]]
    training = [f["x"] for f in altered["train"]]
    assert all(not torch.equal(range_batches[0], training[e * STEPS_PER_EPOCH]) for e in range(3))


# ----------------------------------------------------------------------------------------------
# Settings with runs of their own

@wires("lr_min", "lr_max")
def test_given_lrs_skip_the_range_test_and_set_the_schedule(tmp_path, watch):
    with watch:
        r = train.main(**{**TINY, "epochs": 4}, out_dir=str(tmp_path))
    assert r["lr_range_test"] is None and r["lr_source"] == "given" and (r["lr_min"], r["lr_max"]) == (0.02, 0.2)
    assert r["lr_schedule"] == pytest.approx(torch_one_cycle_lrs(4 * 4, 0.02, 0.2, 1 / 4), rel=1e-9)
    assert [s["lrs"][0] for s in watch.steps] == r["lr_schedule"]            # no range-test step before


@wires("lr_min", "lr_max", "lr_min_factor")
def test_one_given_lr_sets_the_other_by_the_factor(tmp_path):
    stale = tmp_path / "lr_range_test.png"
    stale.write_bytes(b"an earlier run's plot")
    cfg = {k: v for k, v in ONE_EPOCH.items() if k not in ("lr_min", "lr_max")}
    r = train.main(**cfg, lr_max=0.3, lr_min_factor=12, out_dir=str(tmp_path))
    assert not stale.exists()          # a range test plot would not describe these LRs
    assert r["lr_range_test"] is None and r["lr_min"] == pytest.approx(0.3 / 12)
    assert r["lr_schedule"][0] == r["lr_min"] and max(r["lr_schedule"]) <= 0.3
    r = train.main(**cfg, lr_min=0.01, lr_min_factor=20, overwrite=True, out_dir=str(tmp_path))
    assert r["lr_max"] == pytest.approx(0.2) and r["lr_schedule"][0] == 0.01


@wires("seed")
def test_the_same_seed_gives_bit_identical_cpu_fp32_runs(tmp_path):
    a = train.main(**ONE_EPOCH, seed=3, out_dir=str(tmp_path / "a"))
    b = train.main(**ONE_EPOCH, seed=3, out_dir=str(tmp_path / "b"))
    wa = torch.load(tmp_path / "a" / "model.pt", weights_only=True)
    wb = torch.load(tmp_path / "b" / "model.pt", weights_only=True)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert a["history"][0]["train_loss"] == b["history"][0]["train_loss"]
    train.main(**ONE_EPOCH, seed=4, out_dir=str(tmp_path / "c"))
    wc = torch.load(tmp_path / "c" / "model.pt", weights_only=True)
    assert not torch.equal(wa["prep.conv.weight"], wc["prep.conv.weight"])


@wires("compile")
def test_compile_warm_up_leaves_no_trace(tmp_path, monkeypatch):
    """--compile compiles on one step before training and undoes it: with a backend that runs
    the same kernels ("eager"), the run is bit-identical to an uncompiled one."""
    real_compile, compiled_models = torch.compile, []

    def compile_eager(model, **kw):
        compiled_models.append(model)
        return real_compile(model, backend="eager", **kw)
    plain = train.main(**TINY, out_dir=str(tmp_path / "plain"))
    monkeypatch.setattr(torch, "compile", compile_eager)
    compiled = train.main(**TINY, compile=True, out_dir=str(tmp_path / "compiled"))
    assert len(compiled_models) == 1 and compiled["timings"]["compile_seconds"] > 0
    assert [h["train_loss"] for h in compiled["history"]] == [h["train_loss"] for h in plain["history"]]
    wa = torch.load(tmp_path / "plain" / "model.pt", weights_only=True)
    wb = torch.load(tmp_path / "compiled" / "model.pt", weights_only=True)
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


@wires("resume")
def test_a_resumed_run_continues_the_checkpoints_schedule_and_counters(tmp_path, watch):
    with interrupted_at("eval", 2), pytest.raises(utils.Interrupted):        # Ctrl-C after epoch 2 trained
        train.main(**{**TINY, "epochs": 3}, out_dir=str(tmp_path))
    with watch:
        r = train.main(resume=str(tmp_path / "checkpoint.pt"))
    assert [h["epoch"] for h in r["history"]] == [1, 2, 3] and r["config"]["resume"] == str(tmp_path / "checkpoint.pt")
    assert [s["lrs"][0] for s in watch.steps] == r["lr_schedule"][4:]        # steps 4..11: epochs 2 and 3


@wires("seeds")
def test_seeds_run_the_recipe_once_per_seed_in_its_own_folder(tmp_path):
    summary = train.main(**ONE_EPOCH, seeds=2, seed=5, out_dir=str(tmp_path))
    records = [json.loads((tmp_path / f"seed-{s}" / "metrics.json").read_text()) for s in (5, 6)]
    assert [r["config"]["seed"] for r in records] == [5, 6] and [r["config"]["seeds"] for r in records] == [1, 1]
    assert summary["seeds"] == [5, 6] and (tmp_path / "summary.json").exists()


@wires("sweep")
def test_a_sweep_reaches_each_run_as_its_setting(tmp_path):
    """Each point's value is the run's own: the weights model.pt holds are of the swept width."""
    summary = train.main(**{k: v for k, v in ONE_EPOCH.items() if k != "width"}, sweep="width=2,6",
                         out_dir=str(tmp_path))
    for width in (2, 6):
        folder = tmp_path / f"width={width}" / "seed-0"
        weights = torch.load(folder / "model.pt", weights_only=True)
        assert weights["prep.conv.weight"].shape[0] == width
        assert json.loads((folder / "metrics.json").read_text())["config"]["width"] == width
    assert sorted(p["point"] for p in summary["points"]) == ["width=2", "width=6"]


@wires("overwrite")
def test_overwrite_starts_over_in_a_folder_that_holds_a_run_and_only_then(tmp_path):
    train.main(**ONE_EPOCH, out_dir=str(tmp_path))
    (tmp_path / "notes.txt").write_text("mine")                       # not a file of the run: kept
    with pytest.raises(UsageError, match="already holds a complete run"):
        train.main(**ONE_EPOCH, seed=1, out_dir=str(tmp_path))
    r = train.main(**ONE_EPOCH, seed=1, overwrite=True, out_dir=str(tmp_path))
    assert r["config"]["seed"] == 1 and (tmp_path / "notes.txt").read_text() == "mine"
    assert "overwrite" not in r["keywords"] and "--overwrite" not in r["command"]   # where, not what
