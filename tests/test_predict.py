"""predict.py (classify and explain your own images), flip TTA, the Grad-CAM layer, the model summary.

Tiny models (width 8) and image files written to tmp_path; no CIFAR-10 needed.
"""
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import data as cifar
import predict
import train
import utils
from custom_resnet import CustomResNet
from utils import UsageError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = dict(synthetic=True, synthetic_train=512, synthetic_test=128, width=8, batch_size=64,
            eval_batch_size=64, precision="fp32", device="cpu", progress=False, plots=False,
            epochs=2, peak_epoch=1, lr_min=0.02, lr_max=0.2)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A tiny training run (fp32, CPU), its test images written as PNG files, and its record."""
    out = tmp_path_factory.mktemp("run")
    record = train.main(**TINY, out_dir=str(out))
    d = cifar.synthetic_cifar10(TINY["synthetic_train"], TINY["synthetic_test"], seed=0)
    paths = []
    for i, img in enumerate(d.test_images):
        paths.append(str(out / f"test_{i:03d}.png"))
        Image.fromarray(img.permute(1, 2, 0).numpy()).save(paths[-1])
    return {"out": out, "record": record, "paths": paths, "labels": d.test_labels,
            "images": d.test_images, "model": str(out / "model.pt")}


def _model(width=8, seed=0):
    torch.manual_seed(seed)
    return CustomResNet(width=width).eval()


def _rgb(seed=0, size=(32, 32)):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)      # (H, W, 3)


def _loss_and_correct(logits, labels):
    return F.cross_entropy(logits, labels).item(), int((logits.argmax(1) == labels).sum())


# ----------------------------------------------------------------------------------------------
# Predictions equal the training run's evaluation

def test_predictions_on_files_equal_the_training_runs_evaluation(run):
    model = predict.load_model(run["model"])
    preds = predict.predict(model, run["paths"], precision="fp32", batch_size=TINY["eval_batch_size"])
    logits = torch.stack([p.logits for p in preds])
    loss, correct = _loss_and_correct(logits, run["labels"])
    final = run["record"]["history"][-1]
    assert correct == run["record"]["test_correct"]
    assert loss == pytest.approx(final["test_loss"], rel=1e-5)
    assert correct > 1.5 * len(preds) / 10    # above chance: the files carry what the model learned
    # Top-3: most likely first, probabilities of the softmax, class names of CIFAR-10.
    p = preds[0]
    assert [c for c, _ in p.top] == [cifar.CLASSES[i] for i in p.probs.topk(3).indices]
    assert [q for _, q in p.top] == pytest.approx(p.probs.topk(3).values.tolist())
    assert torch.equal(p.image, run["images"][0])          # a 32x32 PNG is used as it is


def test_tensors_work_as_files_do(run):
    model = predict.load_model(run["model"])
    from_files = predict.predict(model, run["paths"][:4], precision="fp32")
    from_uint8 = predict.predict(model, run["images"][:4], precision="fp32")
    from_float = predict.predict(model, run["images"][:4].float() / 255, precision="fp32")
    for a, b, c in zip(from_files, from_uint8, from_float):
        assert torch.equal(a.logits, b.logits) and torch.equal(a.logits, c.logits)
    with pytest.raises(UsageError, match="normalised"):
        predict.predict(model, torch.randn(1, 3, 32, 32))


def test_flip_tta_predictions_are_the_mean_of_both_logits(run):
    model = predict.load_model(run["model"])
    rt = utils.Runtime(torch.device("cpu"), "fp32")
    plain, mirror = predict.logits(model, run["images"], rt), predict.logits(model, run["images"].flip(-1), rt)
    preds = predict.predict(model, run["paths"], tta=True, precision="fp32")
    assert torch.allclose(torch.stack([p.logits for p in preds]), (plain + mirror) / 2, atol=1e-5)


def test_tta_leaves_a_mirror_symmetric_image_unchanged(tmp_path):
    model = _model()
    half = _rgb(1, (16, 32))                                 # (32, 16, 3)
    symmetric = np.concatenate([half, half[:, ::-1]], axis=1)
    Image.fromarray(symmetric).save(tmp_path / "symmetric.png")
    Image.fromarray(_rgb(2)).save(tmp_path / "plain.png")
    off = predict.predict(model, [tmp_path / "symmetric.png", tmp_path / "plain.png"], precision="fp32")
    on = predict.predict(model, [tmp_path / "symmetric.png", tmp_path / "plain.png"], tta=True,
                         precision="fp32")
    assert torch.equal(off[0].logits, on[0].logits)
    assert not torch.allclose(off[1].logits, on[1].logits)   # an ordinary image does change


# ----------------------------------------------------------------------------------------------
# File formats and sizes

def test_formats_convert_as_a_viewer_shows_them(tmp_path):
    rgb = _rgb(3)
    Image.fromarray(rgb).save(tmp_path / "a.png")
    alpha = np.full((32, 32, 1), 255, np.uint8)
    alpha[:8, :8] = 0                                        # a transparent corner
    Image.fromarray(np.concatenate([rgb, alpha], 2), "RGBA").save(tmp_path / "a_rgba.png")
    grey = rgb[..., 0]
    Image.fromarray(grey, "L").save(tmp_path / "a_grey.png")
    Image.fromarray(grey.astype(np.uint16) * 257).save(tmp_path / "a_grey16.png")   # 16-bit
    smooth = (np.indices((32, 32)).sum(0)[..., None] * np.array([4, 2, 3]) % 256).astype(np.uint8)
    Image.fromarray(smooth).save(tmp_path / "a.jpg", quality=95)
    images, _, notes = predict.load_images(
        [tmp_path / n for n in ("a.png", "a_rgba.png", "a_grey.png", "a_grey16.png", "a.jpg")])
    want = torch.from_numpy(rgb).permute(2, 0, 1)
    assert images.shape == (5, 3, 32, 32) and images.dtype == torch.uint8
    assert torch.equal(images[0], want)
    assert torch.equal(images[1][:, 8:, :], want[:, 8:, :]) and torch.equal(images[1][:, :, 8:], want[:, :, 8:])
    assert (images[1][:, :8, :8] == 255).all()               # transparent -> white
    assert torch.equal(images[2], torch.from_numpy(grey).expand(3, -1, -1))
    assert torch.equal(images[3], images[2])                 # 16 bits scaled, not clipped to white
    jpeg_error = (images[4].float() - torch.from_numpy(smooth).permute(2, 0, 1).float()).abs()
    assert jpeg_error.mean() < 4                             # JPEG: close, lossy
    assert "on white" in notes[1] and "greyscale" in notes[2] and "greyscale" in notes[3]


def test_other_sizes_are_centre_cropped_and_resized_with_antialiasing(tmp_path):
    rgb = _rgb(4)
    wide = np.concatenate([np.zeros((32, 16, 3), np.uint8), rgb, np.full((32, 16, 3), 255, np.uint8)], 1)
    Image.fromarray(wide).save(tmp_path / "wide.png")                 # 64x32: black | image | white
    board = (np.indices((320, 320)).sum(0) % 2 * 255).astype(np.uint8)     # 1-pixel checkerboard
    Image.fromarray(board).save(tmp_path / "board.png")
    images, _, notes = predict.load_images([tmp_path / "wide.png", tmp_path / "board.png"])
    assert torch.equal(images[0], torch.from_numpy(rgb).permute(2, 0, 1))  # the central square
    assert notes[0].startswith("64x32 -> centre 32x32 -> 32x32")
    # Antialiased: the fine pattern averages to grey (a nearest or unfiltered resize gives 0/255).
    assert (images[1].float() - 127.5).abs().max() < 10
    squashed, _, notes = predict.load_images([tmp_path / "wide.png"], fit="squash")
    assert not torch.equal(squashed[0], images[0]) and "squashed" in notes[0]
    assert squashed[0][:, :, 0].float().mean() < 60 and squashed[0][:, :, -1].float().mean() > 200


def test_a_tall_image_is_cut_to_its_central_square_too(tmp_path):
    rgb = _rgb(9)
    tall = np.concatenate([np.full((16, 32, 3), 255, np.uint8), rgb, np.zeros((16, 32, 3), np.uint8)], 0)
    Image.fromarray(tall).save(tmp_path / "tall.png")                 # 32x64: white / image / black
    images, _, notes = predict.load_images([tmp_path / "tall.png"])
    assert torch.equal(images[0], torch.from_numpy(rgb).permute(2, 0, 1))
    assert notes[0].startswith("32x64 -> centre 32x32 -> 32x32")
    squashed, _, _ = predict.load_images([tmp_path / "tall.png"], fit="squash")
    assert squashed[0][:, 0, :].float().mean() > 200 and squashed[0][:, -1, :].float().mean() < 60


# ----------------------------------------------------------------------------------------------
# Grad-CAM at every layer name, in predictions and in the training report

def test_gradcam_works_at_every_layer_name():
    model = _model()
    images = torch.from_numpy(np.stack([_rgb(5), _rgb(6)])).permute(0, 3, 1, 2).contiguous()
    layers = predict.gradcam_layers()
    assert {"prep", "layer1", "layer2", "layer3", "layer1.res.conv2", "layer3.conv.pool"} <= set(layers)
    assert "pool" not in layers and "fc" not in layers
    for name, expected in layers.items():
        maps, size = predict.gradcam_maps(model, images, [1, 2], name)
        assert maps.shape == (2, 32, 32) and 0 <= maps.min() and maps.max() <= 1, name
        assert size == expected, name
    with pytest.raises(UsageError, match=r"unknown Grad-CAM layer 'layer4'.*layer2 \(8x8\).*layer1\.res\.conv2"):
        predict.gradcam_maps(model, images, [1, 2], "layer4")


def test_predict_imports_no_training_code():
    code = ("import sys, predict; bad = {'train', 'settings', 'series', 'lr_finder', 'report', 'data', 'bench'} "
            "& set(sys.modules); assert not bad, bad")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr


def test_explain_writes_the_image_and_two_maps(run, tmp_path):
    model = predict.load_model(run["model"])
    preds = predict.predict(model, run["paths"][:2] + run["paths"][:1], precision="fp32")
    paths = predict.explain(model, preds, tmp_path / "ex", cam_class="cat", layer="layer2")
    assert [os.path.basename(p) for p in paths] == ["test_000.png.gradcam.png", "test_001.png.gradcam.png",
                                                    "test_000.png-2.gradcam.png"]
    import matplotlib.image
    assert matplotlib.image.imread(paths[0]).std() > 0.05
    fig = predict.plot_explanation(preds[0], torch.rand(2, 32, 32), [0, 3], ["predicted", "asked for"],
                                   "layer2 (8x8 map)")
    titles = [ax.get_title() for ax in fig.axes[:3]]
    assert "32x32" in titles[0] and "airplane" in titles[1] and "cat" in titles[2] and "asked for" in titles[2]


def test_the_maps_drawn_are_grad_cam_of_the_normalised_image_for_the_predicted_class_and_the_runner_up(run):
    """Computed here apart: the model on (x / 255 - mean) / std in NCHW, GradCAM of the predicted
    class and of the second most likely class, at the layer asked for."""
    import gradcam
    model = predict.load_model(run["model"])
    preds = predict.predict(model, run["paths"][:4], precision="fp32")
    found = predict.explanations(model, preds, layer="layer1")
    reference = CustomResNet(width=8)
    reference.load_state_dict(torch.load(run["model"], weights_only=True))
    mean = torch.tensor(cifar.CIFAR10_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(cifar.CIFAR10_STD).view(1, 3, 1, 1)
    x = (run["images"][:4].float() / 255 - mean) / std
    order = reference.eval()(x).argsort(1, descending=True)                 # (4, 10)
    with gradcam.GradCAM(reference, "layer1") as cam:
        first, second = cam(x, order[:, 0]), cam(x, order[:, 1])
    for i, e in enumerate(found):
        assert e.classes == [int(order[i, 0]), int(order[i, 1])] and e.roles == ["predicted", "runner-up"]
        assert e.layer == "layer1" and e.map_size == (16, 16)
        torch.testing.assert_close(e.maps[0], first[i], atol=1e-4, rtol=0)
        torch.testing.assert_close(e.maps[1], second[i], atol=1e-4, rtol=0)
    asked = predict.explanations(model, preds, cam_class="ship", layer="layer1")
    assert all(e.classes[1] == 8 and e.roles[1] == "asked for" for e in asked)


# ----------------------------------------------------------------------------------------------
# The command line

def test_command_line_prints_top3_per_image_and_writes_overlays(run, tmp_path):
    Image.fromarray(_rgb(7, (64, 48))).save(tmp_path / "photo.jpg")
    r = subprocess.run([sys.executable, "predict.py", run["model"], run["paths"][0], str(tmp_path / "photo.jpg"),
                        "--explain", str(tmp_path / "ex"), "--cam-class", "3", "--precision", "fp32"],
                       cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert "central square resized to 32x32" in lines[0]
    assert lines[1].startswith(run["paths"][0] + ": ") and lines[1].count("%") == 3
    assert lines[2].startswith(str(tmp_path / "photo.jpg")) and "64x48 -> centre 48x48 -> 32x32" in lines[2]
    assert sorted(os.listdir(tmp_path / "ex")) == ["photo.jpg.gradcam.png", "test_000.png.gradcam.png"]


def test_evaluate_prints_accuracy_without_and_with_tta(run, tmp_path, capsys):
    from cifar_files import write_cifar_folder
    write_cifar_folder(tmp_path, n_per_batch=6)
    d = cifar.load_cifar10(tmp_path, download=False)
    assert predict.cli([run["model"], "--evaluate", "--data-dir", str(tmp_path), "--no-download",
                        "--precision", "fp32"]) == 0
    out = capsys.readouterr().out
    model = predict.load_model(run["model"])
    rt = utils.Runtime(torch.device("cpu"), "fp32")
    for tta, label in ((False, "without TTA"), (True, "with flip TTA")):
        _, correct = _loss_and_correct(predict.logits(model, d.test_images, rt, tta), d.test_labels)
        assert re.search(rf"{label}: +accuracy {100 * correct / 6:.2f}% \({correct}/6\)", out), out
    assert "flip TTA gain" in out
    assert "6 test images" in out


def test_evaluate_names_a_validation_split(run, tmp_path, capsys):
    from cifar_files import write_cifar_folder
    from test_data import label_test_batch
    write_cifar_folder(tmp_path, n_per_batch=6)
    label_test_batch(tmp_path, "validation split")
    assert predict.cli([run["model"], "--evaluate", "--data-dir", str(tmp_path), "--no-download",
                        "--precision", "fp32"]) == 0
    out = capsys.readouterr().out
    assert "6 validation images" in out and "test images" not in out


# ----------------------------------------------------------------------------------------------
# Bad input: one line, no traceback, nothing written

def _without_the_synthetic_warning(err):
    """stderr less the one warning line a model trained on synthetic data gets (run's model is)."""
    lines = err.splitlines(keepends=True)
    warned = [line for line in lines if line.startswith("warning: ") and "trained on synthetic data" in line]
    assert len(warned) <= 1, err
    return "".join(line for line in lines if line not in warned)


def _fails(capsys, *argv, match, code=2):
    assert predict.cli([str(a) for a in argv]) == code
    err = _without_the_synthetic_warning(capsys.readouterr().err)
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    assert match in err, err
    return err


def test_a_bad_image_is_one_line_and_the_others_are_still_classified(run, tmp_path, capsys):
    """One missing image does not stop a batch: each bad image is one line on stderr, the others
    are classified (and explained), and the exit status says that some could not be read: 1; 2
    when none could."""
    good = run["paths"][:2]
    (tmp_path / "notes.txt").write_text("not a picture")
    Image.fromarray(_rgb(8, (200, 200))).save(tmp_path / "whole.jpg")
    (tmp_path / "truncated.jpg").write_bytes((tmp_path / "whole.jpg").read_bytes()[:600])
    bad = {tmp_path / "missing.png": "missing.png: no such file", tmp_path / "notes.txt": "notes.txt: not an image file",
           tmp_path / "truncated.jpg": "truncated.jpg: cannot read the image", tmp_path: "is a folder"}
    ex = tmp_path / "ex"
    argv = [run["model"], good[0], *bad, good[1], "--explain", ex]
    assert predict.cli([str(a) for a in argv]) == predict.SOME_UNREAD == 1
    out, err = capsys.readouterr()
    err = _without_the_synthetic_warning(err).splitlines()
    assert len(err) == len(bad) and all(line.startswith("error: ") and says in line
                                        for line, says in zip(err, bad.values())), err
    classified = [line.split(": ")[0] for line in out.splitlines()[1:-1]]
    assert classified == good                                           # in order, the bad ones left out
    assert sorted(os.listdir(ex)) == sorted(f"{os.path.basename(g)}.gradcam.png" for g in good)
    for only_bad in ([tmp_path / "missing.png"], list(bad)):            # none readable: 2, nothing written
        _ = [os.remove(ex / f) for f in os.listdir(ex)]
        assert predict.cli([str(a) for a in [run["model"], *only_bad, "--explain", ex]]) == 2
        out, err = capsys.readouterr()
        assert out == "" and len(_without_the_synthetic_warning(err).splitlines()) == len(only_bad), err
        assert not os.listdir(ex)
    with pytest.raises(UsageError, match="missing.png: no such file"):  # from Python: the call stops, as before
        predict.predict(predict.load_model(run["model"]), [good[0], tmp_path / "missing.png"])


def test_pixels_that_are_not_finite_are_refused_not_classified(run, tmp_path, capsys):
    """NaN passes a "between 0 and 1" check (every comparison with NaN is false): one NaN pixel in
    a tensor, or a float TIFF of NaN, would be classified as if it were black."""
    model = predict.load_model(run["model"])
    for bad in (float("nan"), float("inf")):
        image = torch.rand(3, 32, 32)
        image[1, 5, 7] = bad
        with pytest.raises(UsageError, match="image 0: a float image holds NaN or inf"):
            predict.predict(model, image)
    Image.fromarray(np.full((32, 32), np.nan, np.float32), "F").save(tmp_path / "nan.tiff")
    _fails(capsys, run["model"], tmp_path / "nan.tiff", match="nan.tiff: a float image holds NaN or inf")
    Image.fromarray(np.full((32, 32), 200.0, np.float32), "F").save(tmp_path / "grey.tiff")
    assert predict.load_images([tmp_path / "grey.tiff"])[0].unique().tolist() == [200]     # finite ones still load


def test_a_full_disk_while_explaining_is_one_line_and_leaves_no_half_picture(run, tmp_path, capsys):
    """A file-size limit (what a full disk does to a write, EFBIG instead of ENOSPC): exit 4."""
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (5_000, hard))          # bytes: below a picture's size
    try:
        code = predict.cli([run["model"], run["paths"][0], "--explain", str(tmp_path / "ex")])
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    err = _without_the_synthetic_warning(capsys.readouterr().err)
    assert code == 4 and err.count("\n") == 1 and "File too large); the 0 picture(s) before it are whole" in err, err
    assert os.listdir(tmp_path / "ex") == []


def short_png(path, rows=40, height=64, width=64):
    """A PNG whose header announces `height` rows and whose (complete) zlib stream holds `rows`."""
    import struct
    import zlib
    rng = np.random.default_rng(0)
    raw = b"".join(b"\x00" + rng.integers(0, 256, width * 3, dtype=np.uint8).tobytes() for _ in range(rows))

    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xffffffff)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def test_a_png_whose_pixel_data_stops_early_is_refused_not_filled_with_black(run, tmp_path, capsys):
    short_png(tmp_path / "short.png")
    assert Image.open(tmp_path / "short.png").load() is not None          # Pillow alone would take it
    _fails(capsys, run["model"], tmp_path / "short.png", match="the PNG's pixel data stops early")
    short_png(tmp_path / "whole.png", rows=64)
    assert predict.png_rows_complete(tmp_path / "whole.png") and len(predict.load_images([tmp_path / "whole.png"])[0]) == 1


def test_weights_that_are_not_finite_or_give_non_finite_scores_are_refused(run, tmp_path, capsys):
    good = run["paths"][0]
    weights = torch.load(run["model"], weights_only=True)
    nan = {**weights, "fc.weight": weights["fc.weight"].clone().fill_(float("nan"))}
    torch.save(nan, tmp_path / "nan.pt")
    _fails(capsys, tmp_path / "nan.pt", good, match="broken weights (fc.weight holds NaN or inf)")
    huge = {**weights, "fc.weight": weights["fc.weight"] * 1e38}               # finite, as a flipped exponent bit
    torch.save(huge, tmp_path / "huge.pt")
    _fails(capsys, tmp_path / "huge.pt", good, match="scores for")


def test_evaluate_on_an_empty_test_batch_is_one_line(run, tmp_path, capsys):
    from cifar_files import write_batch, write_cifar_folder
    write_cifar_folder(tmp_path, n_per_batch=2)
    write_batch(tmp_path / "cifar-10-batches-py" / "test_batch", np.zeros((0, 3072), np.uint8), [], keys="str")
    _fails(capsys, run["model"], "--evaluate", "--data-dir", tmp_path, "--no-download", match="holds no images")


def test_bad_weights_and_settings_get_one_line(run, tmp_path, capsys):
    good = run["paths"][0]
    err = _fails(capsys, run["out"] / "checkpoint.pt", good, match="is a training checkpoint")
    assert str(run["out"] / "model.pt") in err                # says which file to give
    _fails(capsys, run["model"], good, "--width", 16, match="of width 8, not 16")
    torch.save(CustomResNet(width=8, num_classes=100).state_dict(), tmp_path / "c100.pt")
    _fails(capsys, tmp_path / "c100.pt", good, match="not the weights of CustomResNet(width=8) ('fc.weight' has shape")
    torch.save(torch.nn.Sequential(torch.nn.Linear(3, 3)).state_dict(), tmp_path / "other.pt")
    _fails(capsys, tmp_path / "other.pt", good, match="not the weights of this repository's CustomResNet")
    (tmp_path / "garbage.pt").write_bytes(b"\x00" * 100)
    _fails(capsys, tmp_path / "garbage.pt", good, match="not a readable weights file")
    _fails(capsys, tmp_path / "none.pt", good, match="none.pt: no such file")
    err = _fails(capsys, run["model"], good, "--layer", "layer5", match="unknown Grad-CAM layer 'layer5'")
    assert all(n in err for n in predict.gradcam_layers())   # lists every valid name
    _fails(capsys, run["model"], good, "--explain", tmp_path / "ex", "--cam-class", "doge",
           match="unknown class 'doge' (did you mean 'dog'?)")
    assert not (tmp_path / "ex").exists()
    (tmp_path / "a_file").write_text("")
    _fails(capsys, run["model"], good, "--explain", tmp_path / "a_file", match="--explain")


# ----------------------------------------------------------------------------------------------
# What the model was trained on, and the arguments' order

def test_a_model_trained_on_synthetic_data_gets_one_warning_line_and_says_what_it_was_trained_on(run, tmp_path,
                                                                                                capsys):
    import weights
    good = run["paths"][0]
    assert predict.cli([run["model"], good]) == 0
    out, err = capsys.readouterr()
    assert err == f"warning: {run['model']} was trained on synthetic data: its answers say nothing about real images\n"
    record = run["record"]
    assert (f"(width 8; trained on synthetic data (512 images): {record['test_accuracy']:.2f}% on 128 held-out "
            f"synthetic images") in out.splitlines()[0]
    state = weights.read_weights(run["model"], "")
    found, _ = weights.provenance(state)
    # The same weights trained on CIFAR-10: no warning; a model.pt written before provenance was (a
    # bare state_dict) loads as before and says so; one whose provenance is not as written says why.
    for name, provenance, says in (
            ("cifar.pt", {**found, "source": "cifar10", "split": "validation", "n": 10000},
             f"trained on CIFAR-10 (512 images): {record['test_accuracy']:.2f}% on a validation split of 10,000"),
            ("old.pt", None, "provenance unknown: not recorded in this file"),
            ("odd.pt", {**found, "source": "imagenet"},
             "provenance unknown: its provenance's 'source' is 'imagenet', not cifar10 or synthetic"),
            ("wide.pt", {**found, "width": 64}, "provenance unknown: its provenance says width 64, the weights are of "
                                                "width 8")):
        bare = {k: v for k, v in state.items()}
        torch.save(bare if provenance is None else weights.with_provenance(bare, provenance), tmp_path / name)
        assert predict.cli([str(tmp_path / name), good]) == 0
        out, err = capsys.readouterr()
        assert err == "" and f"{tmp_path / name} (width 8; {says}" in out.splitlines()[0], out
    assert predict.load_model(tmp_path / "old.pt").provenance is None


def test_arguments_given_the_wrong_way_round_are_named_as_swapped(run, tmp_path, capsys):
    image = run["paths"][0]
    err = _fails(capsys, image, run["model"], match="the arguments are swapped")
    assert err == (f"error: the arguments are swapped: {image} is an image and {run['model']} the model; the model "
                   f"comes first: python predict.py {run['model']} {image}\n")
    assert "weights_only" not in err
    assert predict.cli([run["model"], image]) == 0                      # the command it gives works
    capsys.readouterr()
    _fails(capsys, image, match=f"{image} is an image, not a model; the model comes first: python predict.py MODEL")
    Image.fromarray(_rgb(3, (40, 30))).save(tmp_path / "photo.jpg")
    _fails(capsys, tmp_path / "photo.jpg", tmp_path / "model.pt", match="the arguments are swapped")   # not yet there
    assert not predict.swapped_arguments(run["model"], [image])


def test_a_grad_cam_map_that_is_zero_everywhere_says_so_in_words(run):
    """Grad-CAM's ReLU can keep nothing (no part of the image raised that class's score at that
    layer): the panel, drawn in the colour of 0, gets a caption instead of staying blank."""
    model = predict.load_model(run["model"])
    pred, = predict.predict(model, run["paths"][:1], precision="fp32")
    cams = torch.rand(2, 32, 32)
    cams[1] = 0
    fig = predict.plot_explanation(pred, cams, [0, 3], ["predicted", "runner-up"], "layer2 (8x8 map)")
    titles = [ax.get_title() for ax in fig.axes[1:3]]
    assert "no evidence" not in titles[0]
    assert titles[1].startswith("Grad-CAM: cat\n(runner-up, ") and titles[1].endswith("\nno evidence at this layer")
    assert predict.no_evidence(torch.zeros(32, 32)) and not predict.no_evidence(cams[0])
