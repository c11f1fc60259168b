"""The docs keep their promises: every relative link, image and anchor in README.md and docs/*.md
leads somewhere, and every `python train.py ...` / `python predict.py ...` command they show
parses with the current flags (parsed, never run)."""
import glob
import json
import os
import re
import shlex
import statistics

import pytest

import predict
import settings
import train

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAGES = [os.path.join(ROOT, "README.md")] + sorted(glob.glob(os.path.join(ROOT, "docs", "*.md")))

MD_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")   # [text](target "title")
HTML_LINK = re.compile(r"""<(?:img|a)\b[^>]*?\b(?:src|href)=["']([^"']+)["']""", re.I)
COMMAND = re.compile(r"python (train|predict)\.py\b([^`\n]*)")


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def without_code_blocks(text):
    """The text with fenced code blocks blanked (a link-like string in a code sample is code)."""
    return re.sub(r"```.*?```", "", text, flags=re.S)


def slug(heading):
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"`|\*\*|\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip()).lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path):
    seen, out = {}, set()
    for line in without_code_blocks(read(path)).splitlines():
        m = re.match(r"#{1,6}\s+(.*)", line)
        if m:
            s = slug(m.group(1))
            out.add(s if s not in seen else f"{s}-{seen[s]}")
            seen[s] = seen.get(s, 0) + 1
    return out


def links(path):
    text = without_code_blocks(read(path))
    return MD_LINK.findall(text) + HTML_LINK.findall(text)


def broken_links(path):
    """The relative links of one page that lead nowhere: a missing file, a #anchor that is no
    heading of the markdown page it points into, or a link cut short (`](` never closed)."""
    text = without_code_blocks(read(path))
    bad = [f"{line.strip()[:60]}...: a link not closed" for line in text.splitlines()
           if line.count("](") > len(MD_LINK.findall(line))]
    for target in links(path):
        if re.match(r"[a-z][a-z0-9+.-]*:", target, re.I):       # http:, https:, mailto:
            continue
        file, _, anchor = target.partition("#")
        dest = os.path.normpath(os.path.join(os.path.dirname(path), file)) if file else path
        if not os.path.exists(dest):
            bad.append(f"{target}: no such file")
        elif anchor and dest.endswith(".md") and anchor not in anchors(dest):
            bad.append(f"{target}: no heading #{anchor} in {os.path.relpath(dest, os.path.dirname(path))}")
    return bad


def commands(text):
    """(script, argv) of every train.py / predict.py command in the text, in code blocks and
    inline code alike: a line continued with a backslash is joined; the command ends at a
    comment, a backtick, or a shell operator (&&, |, ;, >)."""
    text = text.replace("\\\n", " ")
    out = []
    for script, rest in COMMAND.findall(text):
        rest = re.split(r"\s#|&&|\||;|>", rest)[0]
        out.append((script, shlex.split(rest)))
    return out


def parse(script, argv):
    """None if argv parses with the script's current flags, else what went wrong."""
    parser = {"train": train.Config.parse_args, "predict": predict.parse_args}[script]
    try:
        parser(argv)
    except SystemExit as e:
        if e.code not in (0, None):                         # --help exits 0
            return f"python {script}.py {' '.join(argv)}: exit {e.code}"
    return None


def test_the_pages_exist_and_link_somewhere():
    assert len(PAGES) >= 4, PAGES
    assert sum(len(links(p)) for p in PAGES) >= 20


@pytest.mark.parametrize("path", PAGES, ids=lambda p: os.path.relpath(p, ROOT))
def test_every_relative_link_and_image_exists(path):
    assert broken_links(path) == []


@pytest.mark.parametrize("path", PAGES, ids=lambda p: os.path.relpath(p, ROOT))
def test_every_command_shown_parses_with_the_current_flags(path, capsys):
    bad = [problem for script, argv in commands(read(path)) if (problem := parse(script, argv))]
    capsys.readouterr()                                      # --help's text and argparse's errors
    assert bad == []


def test_the_checks_catch_a_broken_link_and_a_removed_flag(tmp_path):
    """The checker itself: a missing file, a missing anchor and a flag that does not exist are
    found; a good link, a good anchor and a good command pass."""
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "page.md").write_text("# A page\n\n## The LR rule on the JPEG copies\n")
    (tmp_path / "README.md").write_text(
        "see [page](docs/page.md), [rule](docs/page.md#the-lr-rule-on-the-jpeg-copies), "
        "[gone](docs/gone.md), [bad anchor](docs/page.md#nowhere), [web](https://example.org)\n"
        "![pic](docs/pic.png)\n```bash\n[not a link](nowhere.md)\n```\n| row | [cut](docs/page.md |\n")
    bad = broken_links(str(tmp_path / "README.md"))
    assert bad == ["| row | [cut](docs/page.md |...: a link not closed", "docs/gone.md: no such file",
                   "docs/page.md#nowhere: no heading #nowhere in docs/page.md", "docs/pic.png: no such file"]
    shown = ("```bash\npython train.py --epochs 3 \\\n    --width 16   # quick\n"
             "python -m pip install x && python train.py --no-such-flag 1\n```\n"
             "Run `python predict.py out/model.pt cat.jpg --explain out/x` or `python train.py --help`.")
    found = commands(shown)
    assert found == [("train", ["--epochs", "3", "--width", "16"]), ("train", ["--no-such-flag", "1"]),
                     ("predict", ["out/model.pt", "cat.jpg", "--explain", "out/x"]), ("train", ["--help"])]
    problems = [parse(s, a) for s, a in found]
    assert problems[0] is None and problems[2] is None and problems[3] is None
    assert problems[1] == "python train.py --no-such-flag 1: exit 2"


def test_the_flags_table_names_every_flag():
    """docs/running.md's table of flags (the --help groups, as a page) misses none of them."""
    import dataclasses
    table = read(os.path.join(ROOT, "docs", "running.md"))
    missing = [f.name for f in dataclasses.fields(train.Config)
               if f"| `--{f.name.replace('_', '-')}" not in table]
    assert missing == []


def test_the_quick_check_is_one_command_with_one_measured_time_in_help_the_readme_and_the_notebook():
    """The command --help, the README and the notebook show is the one the record measured, and
    they give its time in the same words, the median of the record's runs on an idle CPU."""
    record = json.loads(read(os.path.join(ROOT, "experiments", "measurements", "quick_check_cpu.json")))
    idle = [r["wall_seconds"] for r in record["runs"] if r["cpu_state"].startswith("idle")]
    assert record["command"] == settings.QUICK_CHECK and idle
    assert settings.QUICK_CHECK_TIME == f"{statistics.median(idle):.0f} s on an idle 2-core AMD EPYC CPU"
    notebook = "".join("".join(c["source"]) for c in json.loads(read(os.path.join(ROOT, "run.ipynb")))["cells"])
    readme = read(os.path.join(ROOT, "README.md"))
    for shown in (settings.EXAMPLES, readme, notebook):
        assert settings.QUICK_CHECK_TIME in shown
    assert settings.QUICK_CHECK in settings.EXAMPLES
    assert settings.QUICK_CHECK in "".join(re.findall(r"```bash\n(.*?)```", readme, flags=re.S))
    # The notebook's QUICK is the same settings, in OUT_DIR/quick-check.
    quick = re.search(r"\nquick = (dict\(.*?\))\n", notebook, flags=re.S).group(1)
    assert eval(quick, {"os": os, "OUT_DIR": "out"}) == train.Config.parse_args(settings.QUICK_CHECK.split()[2:])
