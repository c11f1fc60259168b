"""run.ipynb is executed for real, cell by cell, in a Jupyter kernel (quick mode, CPU), without
installing anything."""
import os

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_the_notebook_runs_top_to_bottom_and_shows_the_pictures(tmp_path):
    nb = nbformat.read(os.path.join(ROOT, "run.ipynb"), as_version=4)
    params = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1 and all(p in params[0].source for p in ("QUICK", "REPO_URL", "INSTALL = True"))
    # The install is the only cell that would reach the network, and INSTALL guards it: the test
    # installs nothing (the requirements are installed already); on Colab INSTALL stays True.
    install = [c for c in nb.cells if "%pip install" in c.source]
    assert len(install) == 1 and "if INSTALL:\n    %pip install" in install[0].source
    # Inject the parameters, as papermill would: quick mode, tiny and fast for CI.
    tiny = dict(width=8, synthetic_train=256, synthetic_test=128, batch_size=64, precision="fp32",
                device="cpu", progress=False, out_dir=str(tmp_path), lr_test_iters=8)
    params[0].source += f"\nQUICK = True\nOVERRIDES = {tiny!r}\nINSTALL = False\n"
    nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": ROOT}}).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "test accuracy:" in text and "LRMIN = " in text and "range test" in text
    assert "CPU: this will take hours" in text            # the runtime check, before anything runs
    images = [o for o in outputs if o.output_type == "display_data" and "image/png" in o.data]
    assert len(images) == 6          # every picture, the range test included
    for name in ["curves.png", "lr_range_test.png", "gradcam.png", "metrics.json", "model.pt"]:
        assert (tmp_path / name).exists(), name
    # Outside Colab the save and upload cells say so and touch nothing.
    assert text.count("Not on Colab") == 2
    assert not os.path.exists(f"{tmp_path}.zip") and not (tmp_path / "uploads").exists()


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
