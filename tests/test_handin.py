"""The hand-in, on a student's clone: the README's commands one after another, in order, with no
refusal, then `git add -A` stages every run's report with every picture it links, and never a
.pt file. Each train.py command runs as the README shows it (its folder, its seeds), made tiny."""
import os
import re
import shutil
import subprocess

import predict
import train
from test_docs import commands, links

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# What makes a command of the README tiny: synthetic data, a narrow network, a few images, a short
# range test, one epoch. Where it writes and how many seeds stay the command's own (two at most).
TINY = dict(synthetic=True, synthetic_train=96, synthetic_test=40, width=4, batch_size=32, eval_batch_size=40,
            epochs=1, peak_epoch=1, lr_test_iters=3, misclassified=2, device="cpu", precision="fp32",
            progress=False)


def git(cwd, *args) -> str:
    return subprocess.run(["git", "-c", "user.name=s", "-c", "user.email=s@s", *args], cwd=cwd, check=True,
                          capture_output=True, text=True).stdout


def clone_of_the_repository(dest):
    """The repository's tracked files as they are in this checkout, committed in a new repository."""
    for name in git(ROOT, "ls-files", "-z").split("\0"):
        if name and os.path.isfile(os.path.join(ROOT, name)):
            os.makedirs(os.path.join(dest, os.path.dirname(name)), exist_ok=True)
            shutil.copy2(os.path.join(ROOT, name), os.path.join(dest, name))
    git(dest, "init", "-q")
    git(dest, "add", "-A")
    git(dest, "commit", "-qm", "the clone")


def readme_commands():
    """The train.py and predict.py commands of the README's shell blocks, in the order shown."""
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        blocks = re.findall(r"```bash\n(.*?)```", f.read(), flags=re.S)
    return commands("\n".join(blocks))


def test_the_readmes_commands_in_order_then_git_add_stage_the_reports_with_their_pictures_and_no_pt(
        tmp_path, monkeypatch):
    clone = tmp_path / "clone"
    clone_of_the_repository(clone)
    monkeypatch.chdir(clone)
    from PIL import Image
    Image.new("RGB", (48, 40), (200, 40, 30)).save("my_photo.jpg")       # the student's own picture
    shown = readme_commands()
    assert [s for s, _ in shown].count("train") >= 3 and "predict" in [s for s, _ in shown]
    for script, argv in shown:
        if script == "train":
            asked = train.Config.parse_args(argv)
            where = {k: v for k, v in asked.items() if k in ("out_dir", "resume", "overwrite")}
            train.main(**TINY, **where, seeds=min(asked.get("seeds", 1), 2))     # no refusal
        else:
            assert predict.cli(argv) == 0, argv
    git(clone, "add", "-A")

    staged = set(git(clone, "diff", "--cached", "--name-only").splitlines())
    assert [p for p in staged if p.endswith(".pt") or p.endswith(".run.lock")] == []
    reports = sorted(p for p in staged if p.startswith("out/") and p.endswith("README.md"))
    assert {"out/README.md", "out/quick-check/README.md", "out/seeds/README.md", "out/seeds/seed-0/README.md",
            "out/seeds/seed-1/README.md"} <= set(reports)
    for report in reports:
        targets = [t for t in links(str(clone / report)) if not re.match(r"[a-z]+:", t)]
        missing = [t for t in targets if os.path.normpath(os.path.join(os.path.dirname(report), t)) not in staged]
        assert missing == [], (report, missing)
        assert targets, report
    pictures = [t for t in links(str(clone / "out" / "README.md")) if t.endswith(".png")]
    assert len(pictures) >= 5 and "out/explain/my_photo.jpg.gradcam.png" in staged
    # What a run or an export leaves beside the reports stays out too.
    ignored = git(clone, "check-ignore", "--no-index", "out/model.pt", "out/quick-check/checkpoint.pt",
                  "out/.run.lock", "out.zip", "space/app.py", "data/cifar10_uint8.pt").split()
    assert len(ignored) == 6


def test_the_readme_says_in_one_line_how_to_hand_in():
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        text = f.read()
    assert "git add -A && git commit" in text and "`*.pt`" in text
