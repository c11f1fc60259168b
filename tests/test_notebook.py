"""run.ipynb is executed for real, cell by cell, in a Jupyter kernel (quick mode, CPU), without
installing anything; and its cells that must fail loudly are run where they fail."""
import os
import subprocess

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_the_notebook_runs_top_to_bottom_and_shows_the_pictures(tmp_path):
    nb = nbformat.read(os.path.join(ROOT, "run.ipynb"), as_version=4)
    params = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1 and all(p in params[0].source for p in ("QUICK", "REPO_URL", "INSTALL = True",
                                                                     "OUT_DIR", "MOUNT_DRIVE = False"))
    assert nb.cells.index(params[0]) == 1 and nb.cells[0].cell_type == "markdown"   # the first code cell
    # The install is the only cell that would reach the network here, and INSTALL guards it: the
    # test installs nothing (the requirements are installed already); on Colab INSTALL stays True.
    install = [c for c in nb.cells if "!pip install -q -r requirements.txt" in c.source]
    assert len(install) == 1 and "if INSTALL:" in install[0].source
    # Inject the parameters, as papermill would: quick mode, tiny and fast for CI.
    tiny = dict(width=8, synthetic_train=256, synthetic_test=128, batch_size=64, precision="fp32",
                device="cpu", progress=False, lr_test_iters=8)
    params[0].source += f"\nQUICK = True\nOVERRIDES = {tiny!r}\nINSTALL = False\nOUT_DIR = {str(tmp_path)!r}\n"
    nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": ROOT}}).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "synthetic test accuracy:" in text and "LRMIN = " in text and "range test" in text
    quick = tmp_path / "quick-check"                     # QUICK leaves OUT_DIR itself to the real run
    assert f"the report to hand in: {quick / 'README.md'}" in text and (quick / "README.md").exists()
    assert "CPU: the full recipe takes hours here" in text      # the runtime check, before anything runs
    images = [o for o in outputs if o.output_type == "display_data" and "image/png" in o.data]
    assert len(images) == 6          # every picture, the range test included
    for name in ["curves.png", "lr_range_test.png", "gradcam.png", "metrics.json", "model.pt", "README.md"]:
        assert (quick / name).exists(), name
    # Outside Colab the save and upload cells say so and touch nothing.
    assert text.count("Not on Colab") == 2
    assert not os.path.exists(f"{quick}.zip") and not (quick / "uploads").exists()


def test_the_notebook_reads_as_a_students_short_cells_with_git_clone_and_train_main():
    """The cells a student reads: `!git clone`, `!pip install -r requirements.txt`, `import train`,
    `train.main(...)`, each code cell short enough to read at once (no helper of 40 lines)."""
    nb = nbformat.read(os.path.join(ROOT, "run.ipynb"), as_version=4)
    code = [c.source for c in nb.cells if c.cell_type == "code"]
    lines = [len(s.splitlines()) for s in code]
    assert max(lines) <= 20, lines
    text = "\n".join(code)
    for shown in ("!git clone --depth 1 {REPO_URL}", "!pip install -q -r requirements.txt", "import train\n",
                  "train.main(", "_exit_code"):
        assert shown in text, shown
    assert "subprocess" not in text


FAKE_COLAB = """
import io, os, sys, types
from IPython.display import Image, display
from PIL import Image as PILImage

buf = io.BytesIO()
PILImage.new("RGB", (48, 36), (200, 40, 30)).save(buf, "PNG")
files = types.SimpleNamespace(downloaded=[])
files.upload = lambda: {"my photo.png": buf.getvalue()}
files.download = lambda path: (files.downloaded.append(path), print("DOWNLOAD", path))
colab = types.ModuleType("google.colab")
colab.files = files
google = types.ModuleType("google")
google.colab = colab
sys.modules.update({"google": google, "google.colab": colab})
"""


@pytest.mark.parametrize("out_on_drive", [False, True])
def test_on_colab_the_run_is_saved_and_an_uploaded_picture_explained(tmp_path, out_on_drive):
    """The save and upload cells on Colab, with google.colab.files faked: a zip of the run is
    offered for download and copied to the mounted Drive (or left there, when the run was written
    to Drive already), and an uploaded photo gets its top-3 and a Grad-CAM picture, from the
    model the run wrote."""
    import torch
    from custom_resnet import CustomResNet
    drive = tmp_path / "drive"
    out = drive / "out" if out_on_drive else tmp_path / "out"
    out.mkdir(parents=True)
    drive.mkdir(exist_ok=True)                           # mounted
    torch.save(CustomResNet(width=8).state_dict(), out / "model.pt")
    nb = nbformat.read(os.path.join(ROOT, "run.ipynb"), as_version=4)
    params = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    save = [c for c in nb.cells if "make_archive" in c.source]
    upload = [c for c in nb.cells if "colab_files.upload()" in c.source]
    assert len(save) == 1 and len(upload) == 1
    setup = nbformat.v4.new_code_cell(FAKE_COLAB + f"\nresults = {{'config': {{'out_dir': {str(out)!r}}}}}\n")
    params.source += f"\nDRIVE = {str(drive)!r}\n"
    nb.cells = [params, setup, save[0], upload[0]]
    nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": ROOT}}).execute()
    outputs = [o for c in nb.cells for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    archive = str(out) + ".zip"
    assert f"DOWNLOAD {archive}" in text
    assert ("on Google Drive already" if out_on_drive else "copied to Google Drive") in text
    import zipfile
    for zipped in (archive, drive / "out.zip"):
        assert "model.pt" in zipfile.ZipFile(zipped).namelist()
    assert "my photo.png:" in text and text.count("%") >= 3        # the top-3 line
    assert (out / "uploads" / "my photo.png").exists() and (out / "explain" / "my_photo.png.gradcam.png").exists()
    images = [o for o in outputs if o.output_type == "display_data" and "image/png" in o.data]
    assert len(images) == 1


# ----------------------------------------------------------------------------------------------
# The cells that must stop the notebook with one line

def run_cells(nb, cells, cwd, params=""):
    """Execute `cells` (the parameters cell first, `params` appended to it, then the cell that
    defines Stop) in a fresh kernel in cwd; returns the executed cells and the error raised (None
    when none was)."""
    first = nbformat.v4.new_code_cell(next(c for c in nb.cells if "parameters" in c.metadata.get("tags", [])).source
                                      + "\n" + params)
    stop = next(c for c in nb.cells if "class Stop(" in c.source)
    run = nbformat.v4.new_notebook(cells=[first] + [nbformat.v4.new_code_cell(c.source) for c in [stop] + cells],
                                   metadata=nb.metadata)
    try:
        nbclient.NotebookClient(run, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(cwd)}}).execute()
        return run.cells, None
    except nbclient.exceptions.CellExecutionError as e:
        return run.cells, e


def stopped_with(cells):
    """(index of the cell that stopped, its one line), from the error outputs (0 is the
    parameters cell, 1 the cell that defines Stop)."""
    errors = [(i, o) for i, c in enumerate(cells) for o in c.get("outputs", []) if o.output_type == "error"]
    assert len(errors) == 1, errors
    i, error = errors[0]
    assert error.ename == "Stop" and len(error.traceback) == 1 and error.traceback[0].startswith("STOPPED: ")
    return i, error.traceback[0]


def notebook():
    return nbformat.read(os.path.join(ROOT, "run.ipynb"), as_version=4)


def clone_cell(nb):
    return next(c for c in nb.cells if "!git clone" in c.source)


def test_an_unreachable_repository_stops_the_notebook_at_the_clone_with_one_line(tmp_path):
    nb = notebook()
    later = [c for c in nb.cells if "import train" in c.source]
    cells, error = run_cells(nb, [clone_cell(nb)] + later, tmp_path,
                             'REPO_URL = "https://127.0.0.1:9/nobody/nothing.git"\nINSTALL = False')
    assert error is not None
    where, line = stopped_with(cells)
    assert where == 2 and "could not get the code from https://127.0.0.1:9/nobody/nothing.git" in line
    assert "check REPO_URL in the Parameters cell, that the repository is public" in line
    assert cells[3].get("execution_count") is None                      # nothing ran after it
    assert not (tmp_path / "custom-resnet-cifar10").exists()


def test_the_placeholder_url_stops_the_notebook_and_says_which_cell_to_edit(tmp_path):
    nb = notebook()
    cells, error = run_cells(nb, [clone_cell(nb)], tmp_path, "INSTALL = False")
    assert error is not None and "set REPO_URL in the Parameters cell" in stopped_with(cells)[1]


def test_a_second_run_pulls_the_latest_commit_of_the_clone(tmp_path):
    origin = tmp_path / "origin"
    origin.mkdir()
    git = lambda *a, cwd=origin: subprocess.run(["git", *a], cwd=cwd, check=True, capture_output=True)  # noqa: E731
    git("init", "-q", "-b", "main")
    (origin / "first.txt").write_text("1")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "first")
    work = tmp_path / "colab"
    work.mkdir()
    nb = notebook()
    params = f"REPO_URL = {'file://' + str(origin)!r}\nINSTALL = False"
    cells, error = run_cells(nb, [clone_cell(nb)], work, params)
    assert error is None and (work / "custom-resnet-cifar10" / "first.txt").exists()
    (origin / "second.txt").write_text("2")                               # pushed since
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "second")
    cells, error = run_cells(nb, [clone_cell(nb)], work, params)          # after a runtime restart
    assert error is None and (work / "custom-resnet-cifar10" / "second.txt").exists()


@pytest.mark.parametrize("params, says", [
    ('OUT_DIR = "/content/drive/MyDrive/cifar10-resnet"', "is on Google Drive, which is not mounted: set MOUNT_DRIVE = True"),
    ("MOUNT_DRIVE = True", "MOUNT_DRIVE = True works on Colab only"),
])
def test_an_unmounted_drive_is_refused_before_training_with_one_line(tmp_path, params, says):
    nb = notebook()
    drive = next(c for c in nb.cells if "drive.mount" in c.source)
    cells, error = run_cells(nb, [clone_cell(nb), drive], ROOT,       # in the repository: nothing to clone
                             f"{params}\nDRIVE = {str(tmp_path / 'no-drive')!r}\nINSTALL = False")
    assert error is not None and stopped_with(cells)[0] == 3 and says in stopped_with(cells)[1]
    assert not (tmp_path / "no-drive").exists()


def test_a_folder_that_holds_a_run_is_refused_in_the_notebooks_own_terms(tmp_path):
    """The refusal names what a notebook user changes, OUT_DIR and OVERRIDES={"overwrite": True},
    not the command line's --out-dir and --overwrite, and nothing in the folder changes."""
    (tmp_path / "checkpoint.pt").write_bytes(b"an earlier run's checkpoint")
    nb = notebook()
    run = next(c for c in nb.cells if "results = train.main(" in c.source)
    cells, error = run_cells(nb, [run], ROOT, f"OUT_DIR = {str(tmp_path)!r}\nINSTALL = False\n"
                             "OVERRIDES = dict(synthetic=True, device='cpu', progress=False)")
    assert error is not None
    where, line = stopped_with(cells)
    assert where == 2 and f"{tmp_path} already holds a run's checkpoint.pt" in line
    assert 'another OUT_DIR' in line and 'OVERRIDES={"overwrite": True}' in line
    assert 'OVERRIDES={"resume": ' in line and "--" not in line
    assert (tmp_path / "checkpoint.pt").read_bytes() == b"an earlier run's checkpoint"
