"""The web app (app/app.py) and its export as a Space (app/export.py): the functions directly, the
export's refusals, and the exported app served on 127.0.0.1 and used in a real headless browser."""
import contextlib
import errno
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pytest
import torch
from PIL import Image

import gradcam
import predict
import train
import utils
from app import app as webapp
from app import export
from custom_resnet import CLASSES, CustomResNet
from utils import UsageError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = dict(synthetic=True, synthetic_train=512, synthetic_test=200, width=8, batch_size=64, eval_batch_size=100,
            precision="fp32", device="cpu", progress=False, plots=False, epochs=2, lr_min=0.02, lr_max=0.2)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    record = train.main(**TINY, out_dir=str(out))
    return out, record


@pytest.fixture(scope="module")
def space(run, tmp_path_factory):
    out, record = run
    folder = tmp_path_factory.mktemp("space") / "space"
    about = export.export(str(out), str(folder))
    return folder, about, record


@pytest.fixture(scope="module")
def loaded(space):
    return webapp.Space(str(space[0]))


# ----------------------------------------------------------------------------------------------
# The export

def test_the_space_holds_the_app_the_inference_code_the_weights_and_the_pictures_and_no_training_code(space, run):
    folder, about, record = space
    files = sorted(os.listdir(folder))
    assert files == ["README.md", "app.py", "custom_resnet.py", "examples", "gallery.pt", "gradcam.py", "model.pt",
                     "plots.py", "predict.py", "requirements.txt", "space.json", "utils.py", "weights.py"]
    assert not {f"{m}.py" for m in export.TRAINING} & set(files)
    assert sorted(os.listdir(folder / "examples")) == [f"{i}_{c}.png" for i, c in enumerate(CLASSES)]
    assert (folder / "model.pt").read_bytes() == (run[0] / "model.pt").read_bytes()
    kept = torch.load(run[0] / "images.pt", weights_only=True)
    gallery = torch.load(folder / "gallery.pt", weights_only=True)
    assert torch.equal(gallery["images"], kept["misclassified"]["images"])
    assert torch.equal(gallery["labels"], kept["misclassified"]["labels"])
    example = np.asarray(Image.open(folder / "examples" / "3_cat.png"))
    assert (example == kept["examples"]["images"][3].permute(1, 2, 0).numpy()).all()


def test_the_spaces_readme_has_the_spaces_header_and_the_runs_figures(space):
    folder, about, record = space
    text = (folder / "README.md").read_text()
    header = text.split("---\n")[1]
    fields = dict(line.split(": ", 1) for line in header.strip().splitlines())
    assert fields["sdk"] == "gradio" and fields["app_file"] == "app.py" and fields["sdk_version"] == export.GRADIO
    assert fields["title"]
    assert f"**Accuracy: {record['test_accuracy']:.2f}%** ({record['test_correct']:,} of 200)" in text
    assert "synthetic data" in text and about["accuracy"] == record["test_accuracy"]
    assert f"LRMAX {record['lr_max']:.4g}: given)" in text                # given in TINY, not found
    assert json.loads((folder / "space.json").read_text()) == about
    assert f"gradio=={export.GRADIO}" in (open(os.path.join(ROOT, "app", "requirements.txt")).read())


def test_the_app_imports_only_the_inference_code():
    assert export.modules_of(os.path.join(ROOT, "app", "app.py")) == [
        "custom_resnet.py", "gradcam.py", "plots.py", "predict.py", "utils.py", "weights.py"]


def test_bad_input_to_the_export_is_one_line(run, tmp_path, capsys):
    out, _ = run

    def fails(run_dir, match):
        assert export.main([str(run_dir), str(tmp_path / "space")]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1 and match in err, err
        assert not (tmp_path / "space").exists()
    fails(tmp_path / "nowhere", "no such folder")
    (tmp_path / "empty").mkdir()
    fails(tmp_path / "empty", "holds no run (no metrics.json)")
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    record = json.loads((copy / "metrics.json").read_text())
    (copy / "metrics.json").write_text(json.dumps({**record, "status": "interrupted"}))
    fails(copy, "holds a run that is interrupted, not finished")
    (copy / "metrics.json").write_text(json.dumps(record))
    (copy / "model.pt").unlink()
    fails(copy, "has no model.pt")
    torch.save(CustomResNet(width=16).state_dict(), copy / "model.pt")
    fails(copy, "is a model of width 16, but the run's record says width 8")
    shutil.copy(out / "model.pt", copy / "model.pt")
    (copy / "images.pt").unlink()
    fails(copy, "has no images.pt")
    (tmp_path / "space").mkdir()
    (tmp_path / "space" / "mine.txt").write_text("keep me")
    assert export.main([str(out), str(tmp_path / "space")]) == 2
    assert "holds other files (mine.txt)" in capsys.readouterr().err
    assert os.listdir(tmp_path / "space") == ["mine.txt"]
    (tmp_path / "a_file").write_text("")
    assert export.main([str(out), str(tmp_path / "a_file")]) == 2
    assert "a_file is a file: give a new or empty folder" in capsys.readouterr().err


def test_an_export_again_updates_the_space_in_place_and_keeps_its_git(run, space, tmp_path):
    folder = tmp_path / "space"
    export.export(str(run[0]), str(folder))
    (folder / ".git").mkdir()
    (folder / ".git" / "HEAD").write_text("ref: refs/heads/main")
    (folder / "examples" / "0_airplane.png").write_bytes(b"stale")
    (folder / "checkpoint.py").write_text("# a module an earlier export shipped")
    export.export(str(run[0]), str(folder))
    assert not (folder / "checkpoint.py").exists() and (folder / "weights.py").exists()
    assert (folder / ".git" / "HEAD").read_text() == "ref: refs/heads/main"
    assert (folder / "examples" / "0_airplane.png").read_bytes() == (space[0] / "examples" / "0_airplane.png").read_bytes()


def tree(folder):
    """Every file under folder, hidden ones included: {relative path: bytes}."""
    return {os.path.relpath(os.path.join(d, f), folder): open(os.path.join(d, f), "rb").read()
            for d, _, files in os.walk(folder) for f in files}


@contextlib.contextmanager
def failing(how, monkeypatch):
    """A write of the export fails: a file-size limit (what a full disk does to a write, EFBIG
    instead of ENOSPC: here at model.pt, early), a full disk at the last file (README.md), or the
    rename that swaps the new Space in."""
    if how == "size limit":
        import resource
        soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
        resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, hard))          # bytes: below model.pt's size
        try:
            yield
        finally:
            resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        return
    with monkeypatch.context() as m:
        if how == "disk full at the last file":
            def full(*args):
                raise OSError(errno.ENOSPC, "No space left on device")
            m.setattr(utils, "atomic_write_text", full)
        else:
            rename = os.rename

            def refused(src, dst):
                if ".new-" in os.path.basename(src):
                    raise OSError(errno.EXDEV, "Invalid cross-device link")
                return rename(src, dst)
            m.setattr(os, "rename", refused)
        yield


@pytest.mark.parametrize("how", ["size limit", "disk full at the last file", "the swap"])
def test_an_export_that_fails_leaves_the_old_space_as_it_was_and_makes_no_half_space(run, tmp_path, capsys,
                                                                                     monkeypatch, how):
    folder = tmp_path / "space"
    export.export(str(run[0]), str(folder))
    (folder / ".git").mkdir()
    (folder / ".git" / "HEAD").write_text("ref: refs/heads/main")
    before = tree(folder)
    with failing(how, monkeypatch):
        assert export.main([str(run[0]), str(folder)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: could not write the Space (") and err.count("\n") == 1, err
    assert f"{folder} is as it was" in err
    assert tree(folder) == before and os.listdir(tmp_path) == ["space"]          # nothing beside it either
    with failing(how, monkeypatch):
        assert export.main([str(run[0]), str(tmp_path / "new")]) == 2
    assert f"{tmp_path / 'new'} was not made" in capsys.readouterr().err
    assert os.listdir(tmp_path) == ["space"]


def spoiled(run_dir, spoil):
    """Change one thing of a finished run's folder."""
    metrics = run_dir / "metrics.json"
    record = json.loads(metrics.read_text())
    if spoil == "no config":
        del record["config"]
    elif spoil == "a list":
        record = [record]
    elif spoil == "accuracy edited":
        record["test_accuracy"] = 99.0
    elif spoil == "accuracy and its epoch edited":
        record["test_accuracy"] = record["history"][-1]["test_acc"] = 99.0
    elif spoil == "another run's model":
        torch.save(CustomResNet(width=8).state_dict(), run_dir / "model.pt")
    elif spoil == "provenance edited":
        import weights
        state = weights.read_weights(str(run_dir / "model.pt"), "")
        found, _ = weights.provenance(state)
        torch.save(weights.with_provenance(dict(state), {**found, "accuracy": 99.0}), run_dir / "model.pt")
    elif spoil == "no checkpoint":
        (run_dir / "checkpoint.pt").unlink()
    elif spoil == "images.pt cut":
        blob = (run_dir / "images.pt").read_bytes()
        (run_dir / "images.pt").write_bytes(blob[:len(blob) // 2])
    elif spoil == "a label out of range":
        kept = torch.load(run_dir / "images.pt", weights_only=True)
        kept["misclassified"]["labels"][0] = 12
        torch.save(kept, run_dir / "images.pt")
    metrics.write_text(json.dumps(record))


@pytest.mark.parametrize("spoil, says", [
    ("a list", "metrics.json: not a record of a run as train.py writes it (a JSON list, not an object)"),
    ("no config", "metrics.json: not a record of a run as train.py writes it (its 'config' is missing"),
    ("accuracy edited", "its 'test_accuracy' is 99.0, not its last epoch's test_acc"),
    ("accuracy and its epoch edited", "metrics.json does not agree with the run's checkpoint (in history)"),
    ("another run's model", "model.pt is not the weights of the run's last epoch"),
    ("provenance edited", "model.pt: its provenance (synthetic, 99.00%, width 8) is not the run's"),
    ("no checkpoint", "has no checkpoint.pt, against which the figures a Space publishes are checked"),
    ("images.pt cut", "images.pt: not a readable file of images (cut short: its zip archive has no end)"),
    ("a label out of range", "images.pt: its 'misclassified.labels' is not one class 0..9 per image"),
])
def test_a_record_weights_or_images_not_the_runs_own_are_refused_in_one_line(run, tmp_path, capsys, spoil, says):
    """The Space publishes the accuracy of the run's verified checkpoint, never an edited
    metrics.json's; every file it takes is read verified, and the hint is a command that works."""
    copy = tmp_path / "run"
    shutil.copytree(run[0], copy)
    spoiled(copy, spoil)
    assert export.main([str(copy), str(tmp_path / "space")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and says in err, err
    assert not (tmp_path / "space").exists()
    if spoil == "accuracy and its epoch edited":                 # the command it gives puts things right
        assert f"python train.py --resume {copy / 'checkpoint.pt'}" in err
        train.main(resume=str(copy / "checkpoint.pt"))
        assert export.export(str(copy), str(tmp_path / "space"))["accuracy"] == run[1]["test_accuracy"]


def test_a_space_that_cannot_be_read_is_one_line_at_start_up(space, tmp_path):
    folder = tmp_path / "space"
    shutil.copytree(space[0], folder)
    gallery = torch.load(folder / "gallery.pt", weights_only=True)
    checks = [("gallery.pt", lambda: torch.save({**gallery, "confidence": gallery["confidence"] * float("nan")},
                                                folder / "gallery.pt"),
               "gallery.pt: its 'confidence' is not one probability in [0, 1] per image"),
              ("gallery.pt", lambda: (folder / "gallery.pt").write_bytes(b"PK\x03\x04 cut"),
               "gallery.pt: not a readable file of images (cut short"),
              ("space.json", lambda: (folder / "space.json").write_text("[]"),
               "space.json: a JSON list, not the object the export writes"),
              ("space.json", lambda: (folder / "space.json").write_text('{"accuracy": "93", "data": "x"}'),
               "space.json: its 'accuracy' is not a percentage from 0 to 100")]
    for name, spoil, says in checks:
        kept = (folder / name).read_bytes()
        spoil()
        with pytest.raises(UsageError, match=re.escape(says) + ".*export the Space again: python -m app.export"):
            webapp.Space(str(folder))
        (folder / name).write_bytes(kept)
    shutil.rmtree(folder / "examples")
    with pytest.raises(UsageError, match="examples: no such folder"):
        webapp.Space(str(folder))
    out = subprocess.run([sys.executable, "app.py"], cwd=folder, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and "examples: no such folder" in out.stderr, out.stderr


# ----------------------------------------------------------------------------------------------
# The app's functions, directly (no Gradio needed)

def test_the_layers_offered_put_maps_of_at_least_5x5_first_each_named_with_its_size():
    assert webapp.layer_choices() == [("layer2 (8x8)", "layer2"), ("layer1 (16x16)", "layer1"),
                                      ("prep (32x32)", "prep"), ("layer3 (4x4, under 5x5)", "layer3")]


@pytest.mark.parametrize("k", [1, 3, 10])
def test_the_top_k_classes_are_the_models_most_likely_k(loaded, space, k):
    image = Image.open(space[0] / "examples" / "6_frog.png")
    top, cams = webapp.classify(loaded, image, top_k=k, show_cam=False)
    assert cams == [] and len(top) == k
    p, = predict.predict(loaded.model, [image], top=10, precision="fp32")
    assert list(top.items()) == p.top[:k]


@pytest.mark.parametrize("k", [0, 11, 2.5, True, "3", float("nan")])
def test_the_top_k_control_cannot_go_past_10_or_below_1(loaded, space, k):
    with pytest.raises(UsageError, match="top classes must be a whole number from 1 to 10"):
        webapp.classify(loaded, Image.open(space[0] / "examples" / "0_airplane.png"), top_k=k)


def test_grad_cam_shows_the_image_beside_its_map_for_each_top_class_asked_at_the_layer_and_opacity(loaded, space):
    image = Image.open(space[0] / "examples" / "1_automobile.png")
    top, cams = webapp.classify(loaded, image, top_k=5, show_cam=True, cams=3, layer="layer1", opacity=0.7)
    assert len(cams) == 3 and all(c[0].shape == (webapp.SHOWN, 2 * webapp.SHOWN, 3) for c in cams)
    assert len(webapp.classify(loaded, image, top_k=2, cams=5)[1]) == 2      # maps of the classes shown only
    assert [c[1].split(" (")[0] for c in cams] == [f"Grad-CAM: {name}" for name in list(top)[:3]]
    assert all(c[1].endswith("layer1 16x16") for c in cams)
    # The right half is the map laid over the image with that opacity, computed here apart.
    x = torch.from_numpy(np.array(image)).permute(2, 0, 1)
    maps, _ = predict.gradcam_maps(loaded.model, x[None], [CLASSES.index(list(top)[0])], "layer1")
    blended = gradcam.blend(x.permute(1, 2, 0)[None].float() / 255, maps, 0.7)[0]
    expected = (blended.repeat_interleave(5, 0).repeat_interleave(5, 1) * 255).round().to(torch.uint8).numpy()
    assert np.abs(cams[0][0][:, webapp.SHOWN:].astype(int) - expected.astype(int)).max() <= 1
    left = cams[0][0][:, :webapp.SHOWN]                                   # the image itself
    assert (left == x.permute(1, 2, 0).numpy().repeat(5, 0).repeat(5, 1)).all()


def test_opacity_0_shows_the_image_and_1_the_map_alone(loaded, space):
    image = Image.open(space[0] / "examples" / "2_bird.png")
    _, plain = webapp.classify(loaded, image, top_k=1, cams=1, opacity=0.0)
    _, heat = webapp.classify(loaded, image, top_k=1, cams=1, opacity=1.0)
    half = webapp.SHOWN
    assert (plain[0][0][:, half:] == plain[0][0][:, :half]).all()
    assert not (heat[0][0][:, half:] == heat[0][0][:, :half]).all()
    for opacity in (-0.1, 1.5):
        with pytest.raises(UsageError, match="opacity must lie between 0 and 1"):
            webapp.classify(loaded, image, opacity=opacity)
    with pytest.raises(UsageError, match="Grad-CAM is offered at"):
        webapp.classify(loaded, image, layer="fc")


@pytest.mark.parametrize("count", [1, 4, 10])
def test_the_gallery_shows_as_many_misclassified_images_as_asked_each_with_its_classes(loaded, count):
    shown = webapp.misclassified(loaded, show=True, count=count, show_cam=True)
    assert len(shown) == count and all(p.shape == (webapp.SHOWN, 2 * webapp.SHOWN, 3) for p, _ in shown)
    for i, (_, caption) in enumerate(shown):
        true, pred = CLASSES[int(loaded.gallery_labels[i])], CLASSES[int(loaded.gallery_predicted[i])]
        assert caption.startswith(f"true: {true}, predicted: {pred} (") and true != pred
    assert webapp.misclassified(loaded, show=False, count=count) == []
    with pytest.raises(UsageError, match="whole number"):
        webapp.misclassified(loaded, count=float("nan"))
    assert all(p.shape == (webapp.SHOWN, webapp.SHOWN, 3) for p, _ in webapp.misclassified(loaded, count=count,
                                                                                            show_cam=False))


def test_the_gallery_cannot_show_more_than_the_run_kept(loaded):
    available = len(loaded.gallery_labels)
    assert 10 < available <= 100
    assert len(webapp.misclassified(loaded, count=available)) == available
    with pytest.raises(UsageError, match=f"from 0 to {available}"):
        webapp.misclassified(loaded, count=available + 1)


def test_a_bad_upload_is_one_clear_message(loaded, tmp_path):
    with pytest.raises(UsageError, match="no image: upload one"):
        webapp.classify(loaded, None)
    (tmp_path / "notes.png").write_text("not a picture")
    with pytest.raises(UsageError, match="not an image file"):
        webapp.classify(loaded, str(tmp_path / "notes.png"))
    with pytest.raises(UsageError, match="normalised"):
        webapp.classify(loaded, torch.randn(3, 32, 32))
    with pytest.raises(UsageError, match="holds NaN or inf"):                # NaN passes a [0, 1] check
        webapp.classify(loaded, torch.rand(3, 32, 32).index_fill_(2, torch.tensor([3]), float("nan")))
    with pytest.raises(UsageError, match="one image at a time"):
        webapp.classify(loaded, [str(tmp_path / "notes.png")] * 2)
    big = Image.fromarray(np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8))
    top, cams = webapp.classify(loaded, big, top_k=2)                    # any size: its central square
    assert len(top) == 2 and len(cams) == 1


# ----------------------------------------------------------------------------------------------
# Served, and used in a real browser

def browser_or_skip():
    """A headless Chromium driven by selenium (Debian's chromium and chromium-driver): skipped,
    with the reason, where the app's packages or the browser are absent."""
    pytest.importorskip("gradio", reason="the app's packages are not installed (app/requirements.txt)")
    pytest.importorskip("selenium", reason="selenium is not installed (requirements-dev.txt)")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if not chromium or not driver:
        pytest.skip("no Chromium and ChromeDriver here (Debian: apt-get install chromium chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1400,1800"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(driver), options=options)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(folder, port, timeout=120, command=("app.py",), cwd=None):
    """Start `python app.py` in the Space folder (or `python *command` in cwd) with Gradio's
    GRADIO_SERVER_PORT=port, in a process group of its own (so that a test can end every process
    it started); wait until 127.0.0.1:port answers. Its stderr goes to <folder>.stderr (the app's
    start-up lines)."""
    env = {**os.environ, "GRADIO_SERVER_PORT": str(port), "GRADIO_ANALYTICS_ENABLED": "False"}
    env.pop("PORT", None)
    with open(f"{folder}.stderr", "w") as err:
        proc = subprocess.Popen([sys.executable, *command], cwd=cwd or folder, env=env, stdout=subprocess.DEVNULL,
                                stderr=err, text=True, start_new_session=True)
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"the app exited: {open(f'{folder}.stderr').read()[-2000:]}")
        if answers(port):
            return proc
        time.sleep(0.3)
    proc.kill()
    raise AssertionError("the app did not answer in time")


def answers(port) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


# The longest caption the gallery can have: the two longest class names, 100%.
LONGEST = ("automobile", "airplane")


@pytest.fixture(scope="module")
def served(space, tmp_path_factory):
    """The exported Space served by `python app.py` on 127.0.0.1 (a copy whose first misclassified
    images are captioned with the longest class names): (folder, port, its Space)."""
    pytest.importorskip("gradio", reason="the app's packages are not installed (app/requirements.txt)")
    folder = tmp_path_factory.mktemp("served") / "space"
    shutil.copytree(space[0], folder)
    gallery = torch.load(folder / "gallery.pt", weights_only=True)
    gallery["labels"][:10], gallery["predicted"][:10] = CLASSES.index(LONGEST[0]), CLASSES.index(LONGEST[1])
    gallery["confidence"][:10] = 1.0
    torch.save(gallery, folder / "gallery.pt")
    port = free_port()
    proc = serve(folder, port)
    yield folder, port, webapp.Space(str(folder))
    proc.terminate()
    proc.wait(timeout=30)


def wait_for(condition, timeout=60, what="the page"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.25)
    raise AssertionError(f"{what} did not appear within {timeout} s")


def test_in_a_browser_an_upload_gets_its_top_classes_and_grad_cam_and_the_gallery_opens(served, tmp_path):
    from selenium.webdriver.common.by import By
    folder, port, loaded = served
    browser = browser_or_skip()
    try:
        browser.get(f"http://127.0.0.1:{port}/")
        upload = wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, "#upload input[type=file]"), what="the upload")
        picture = tmp_path / "my picture.png"
        Image.open(folder / "examples" / "8_ship.png").resize((96, 80)).save(picture)      # any size
        upload[0].send_keys(str(picture))
        wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, "#upload img"), what="the uploaded image")
        browser.find_element(By.CSS_SELECTOR, "#classify").click()
        expected, = predict.predict(loaded.model, [str(picture)], top=3, precision="fp32")

        def top_rows():
            lines = browser.find_element(By.CSS_SELECTOR, "#top-classes").text.splitlines()
            rows = [(lines[i], lines[i + 1]) for i in range(len(lines) - 1) if lines[i] in CLASSES and
                    lines[i + 1].endswith("%")]
            return rows if len(rows) == 3 else None
        rows = wait_for(top_rows, what="the top-3 classes")
        assert [name for name, _ in rows] == [name for name, _ in expected.top]
        assert [int(p[:-1]) for _, p in rows] == [round(100 * q) for _, q in expected.top]
        cams = wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, "#gradcam img"), what="the Grad-CAM image")
        assert cams[0].size["width"] > 100
        assert f"Grad-CAM: {expected.top[0][0]}" in browser.find_element(By.CSS_SELECTOR, "#gradcam").text
        browser.find_element(By.CSS_SELECTOR, "#show-wrong input[type=checkbox]").click()
        shown = wait_for(lambda: (lambda imgs: imgs if len(imgs) == 10 else None)(
            browser.find_elements(By.CSS_SELECTOR, "#misclassified img")), what="10 misclassified images")
        assert len(shown) == 10
        first = f"true: {CLASSES[int(loaded.gallery_labels[0])]}, predicted: {CLASSES[int(loaded.gallery_predicted[0])]}"
        assert first in browser.find_element(By.CSS_SELECTOR, "#misclassified").text
        # Every caption whole: the longest one ("true: automobile, predicted: airplane (100%)") wraps
        # within its picture's width instead of being cut with an ellipsis.
        captions = browser.execute_script("return [...document.querySelectorAll('#misclassified .caption-label')]"
                                          ".map(e => [e.textContent, e.scrollWidth, e.clientWidth])")
        assert len(captions) == 10 and captions[0][0] == f"true: {LONGEST[0]}, predicted: {LONGEST[1]} (100%)"
        assert all(0 < shown <= room for _, shown, room in captions), captions
    finally:
        browser.quit()


def test_an_upload_reaches_the_handler_as_the_file_itself_so_nan_pixels_are_refused(loaded, tmp_path):
    """Gradio's own conversion to RGB would turn a float TIFF of NaN into a picture silently."""
    pytest.importorskip("gradio", reason="the app's packages are not installed (app/requirements.txt)")
    from gradio.data_classes import ImageData
    upload, = [b for b in webapp.build(loaded).blocks.values() if getattr(b, "elem_id", None) == "upload"]
    Image.fromarray(np.full((32, 32), np.nan, np.float32), "F").save(tmp_path / "nan.tiff")
    given = upload.preprocess(ImageData(path=str(tmp_path / "nan.tiff"), orig_name="nan.tiff"))
    with pytest.raises(UsageError, match="nan.tiff: a float image holds NaN or inf"):
        webapp.classify(loaded, given)


def test_a_run_that_made_no_mistake_still_gets_a_page(space, tmp_path):
    pytest.importorskip("gradio", reason="the app's packages are not installed (app/requirements.txt)")
    folder = tmp_path / "space"
    shutil.copytree(space[0], folder)
    gallery = torch.load(folder / "gallery.pt", weights_only=True)
    torch.save({k: (v[:0] if isinstance(v, torch.Tensor) else v) for k, v in gallery.items()}, folder / "gallery.pt")
    empty = webapp.Space(str(folder))
    assert webapp.misclassified(empty, count=0) == [] and webapp.build(empty) is not None


def docs_example():
    """The gradio_client example of docs/web-app.md, as it stands there."""
    text = open(os.path.join(ROOT, "docs", "web-app.md"), encoding="utf-8").read()
    section = text.split("## Call it from a program: its API", 1)[1]
    return section.split("```python\n", 1)[1].split("```", 1)[0]


def test_the_api_has_one_endpoint_per_action_with_the_controls_names_and_the_docs_example_runs(served):
    """gradio_client sees /classify and /misclassified, their parameters named as the controls
    (not /answer(param_0 ... param_5) and five copies /mistakes, /mistakes_1, ...), and the
    example of docs/web-app.md, run as it stands but for the port, gets predict.py's answer."""
    from gradio_client import Client
    folder, port, loaded = served
    api = Client(f"http://127.0.0.1:{port}/", verbose=False).view_api(return_format="dict", print_info=False)
    assert {name: [p["parameter_name"] for p in e["parameters"]] for name, e in api["named_endpoints"].items()} == {
        "/classify": ["image", "top_k", "show_gradcam", "gradcam_count", "layer", "opacity"],
        "/misclassified": ["show_misclassified", "count", "show_gradcam", "layer", "opacity"]}
    assert not api["unnamed_endpoints"]
    example = docs_example()
    assert example.count("http://127.0.0.1:7860/") == 1
    out = subprocess.run([sys.executable, "-c", example.replace("127.0.0.1:7860", f"127.0.0.1:{port}")], cwd=folder,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()[-3:]
    p, = predict.predict(loaded.model, [str(folder / "examples" / "3_cat.png")], top=3, precision="fp32")
    assert lines[0] == f"{p.top[0][0]} {[(c, round(q, 3)) for c, q in p.top]}"
    assert lines[1].startswith(f"Grad-CAM: {p.top[0][0]} (") and os.path.isfile(lines[1].rsplit(" ", 1)[1])
    assert lines[2] == str([caption for _, caption in webapp.misclassified(loaded, count=2, show_cam=False)])


def test_sigterm_to_export_serve_stops_the_server_too(run, tmp_path):
    """--serve runs app.py as a process of its own: a SIGTERM to the command must reach it, or
    the server goes on serving after the command has gone."""
    pytest.importorskip("gradio", reason="the app's packages are not installed (app/requirements.txt)")
    import signal
    port = free_port()
    proc = serve(tmp_path / "space", port, command=("-m", "app.export", str(run[0]), str(tmp_path / "space"),
                                                    "--serve"), cwd=ROOT)
    try:
        proc.send_signal(signal.SIGTERM)                                   # to the command alone
        wait_for(lambda: not answers(port), timeout=20, what="the server's end")
        assert proc.wait(timeout=60) == 128 + signal.SIGTERM              # the shell's convention
    finally:
        with contextlib.suppress(ProcessLookupError):                    # whatever it left behind
            os.killpg(proc.pid, signal.SIGKILL)


def test_the_port_is_gradios_own_variable(monkeypatch):
    monkeypatch.delenv("GRADIO_SERVER_PORT", raising=False)
    assert webapp.server_port() == 7860
    monkeypatch.setenv("GRADIO_SERVER_PORT", "8123")
    monkeypatch.setenv("PORT", "9999")
    assert webapp.server_port() == 8123
    for bad in ("http", "0", "70000", "-1"):
        monkeypatch.setenv("GRADIO_SERVER_PORT", bad)
        with pytest.raises(UsageError, match=f"GRADIO_SERVER_PORT='{bad}' is not a port: give a number from 1 to 65535"):
            webapp.server_port()


def test_a_model_trained_on_synthetic_data_is_said_to_be_on_the_page_and_at_start_up(served, space, run, tmp_path):
    """The Space's model.pt carries its provenance (byte for byte the run's): the app warns on the
    page, in the Space's README and in one line at start-up; a model.pt without provenance falls
    back on space.json's source; a real-data model gets no warning."""
    import weights
    folder, _, loaded = served
    found, _ = weights.provenance(weights.read_weights(str(folder / "model.pt"), ""))
    assert found["source"] == "synthetic" and found["accuracy"] == run[1]["test_accuracy"]
    says = "this model was trained on synthetic data: its answers say nothing about real images"
    assert loaded.warning == says and f"**Warning: {says}.**" in webapp.about_text(loaded)
    assert f"**Warning: {says}.**" in (space[0] / "README.md").read_text()
    started = open(f"{folder}.stderr").read().splitlines()
    assert [line for line in started if "warning" in line.lower()] == [f"warning: {folder / 'model.pt'}: {says}"]
    copy = tmp_path / "space"
    shutil.copytree(space[0], copy)
    state = weights.read_weights(str(copy / "model.pt"), "")
    torch.save(dict(state), copy / "model.pt")                          # as written before provenance was
    assert webapp.Space(str(copy)).warning == says                       # space.json's source
    torch.save(weights.with_provenance(dict(state), {**found, "source": "cifar10"}), copy / "model.pt")
    about = json.loads((copy / "space.json").read_text())
    (copy / "space.json").write_text(json.dumps({**about, "source": "cifar10"}))
    real = webapp.Space(str(copy))
    assert real.warning == "" and "Warning" not in webapp.about_text(real)


def test_an_export_again_says_what_it_replaces(run, tmp_path, capsys):
    folder = tmp_path / "space"
    assert export.main([str(run[0]), str(folder)]) == 0
    assert not capsys.readouterr().out.startswith("replaced")             # a new Space replaces nothing
    about = json.loads((folder / "space.json").read_text())
    assert about["run"] == run[0].name
    assert export.main([str(run[0]), str(folder)]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first == (f"replaced the earlier export in {folder}: run {run[0].name!r}, width 8, 2 epochs, "
                     f"{about['accuracy']:.2f}% on {about['data']}, commit {about['commit'][:12]}; the same weights as "
                     f"{run[0] / 'model.pt'}")
    (folder / "model.pt").write_bytes(b"another model")                  # what the export replaces is read, not trusted
    assert export.main([str(run[0]), str(folder)]) == 0
    assert capsys.readouterr().out.splitlines()[0].endswith(f"; other weights than {run[0] / 'model.pt'}")


def test_a_grad_cam_map_that_is_zero_everywhere_is_captioned_in_words(loaded, space, monkeypatch):
    image = Image.open(space[0] / "examples" / "5_dog.png")
    _, shown = webapp.classify(loaded, image, top_k=2, cams=2)
    assert not any("no evidence" in caption for _, caption in shown)
    monkeypatch.setattr(predict, "gradcam_maps", lambda model, images, targets, layer: (
        torch.zeros(len(images), 32, 32), (8, 8)))
    _, shown = webapp.classify(loaded, image, top_k=2, cams=2)
    assert all(caption.endswith(", no evidence at layer2 8x8") for _, caption in shown), shown
    assert all(caption.endswith(", no evidence") for _, caption in webapp.misclassified(loaded, count=3))
