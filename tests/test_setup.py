"""The README's set-up commands (install, run; install, test) are the ones CI runs, and the test
requirements cover every tool the tests need."""
import ast
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def read(name):
    with open(os.path.join(ROOT, name)) as f:
        return f.read()


def readme_set_up_commands():
    """The commands of the first code block of the README's "Set up and run", comments dropped."""
    section = read("README.md").split("\n## Set up and run\n", 1)[1]
    block = section.split("```bash\n", 1)[1].split("```", 1)[0]
    return [line.split(" #")[0].strip() for line in block.splitlines() if line.strip()]


def test_the_readme_set_up_installs_first_runs_the_recipe_and_ends_with_the_tests():
    commands = readme_set_up_commands()
    assert commands[0] == "python -m pip install -r requirements.txt" and "python train.py" in commands
    assert commands[-1] == "python -m pip install -r requirements-dev.txt && python -m pytest"


def test_ci_runs_exactly_the_readmes_test_command():
    test = readme_set_up_commands()[-1]
    commands = [line.strip() for line in read(".ci/run").splitlines()
                if line.strip() and not line.startswith("#")]
    assert commands[-1] == test                       # the last thing CI does: its exit status


def third_party_imports_of_the_tests():
    project = {f[:-3] for d in (ROOT, os.path.join(ROOT, "tests")) for f in os.listdir(d) if f.endswith(".py")}
    project |= {d for d in os.listdir(ROOT) if os.path.isfile(os.path.join(ROOT, d, "__init__.py"))}   # experiments
    names = set()
    for f in os.listdir(os.path.join(ROOT, "tests")):
        if f.endswith(".py"):
            tree = ast.parse(read(os.path.join("tests", f)))
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    names |= {a.name.split(".")[0] for a in node.names}
                elif isinstance(node, ast.ImportFrom) and node.level == 0:
                    names.add(node.module.split(".")[0])
                elif (isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "importorskip"
                      and isinstance(node.args[0], ast.Constant)):
                    names.add(node.args[0].value.split(".")[0])
    names = names - set(sys.stdlib_module_names) - project
    return {PACKAGE_OF_IMPORT.get(n, n) for n in names}


PACKAGE_OF_IMPORT = {"PIL": "pillow"}    # import name -> the name pip installs it by


def requirement_names(name):
    return {re.split(r"[<>=!~ ;\[]", line.strip())[0].lower() for line in read(name).splitlines()
            if line.strip() and not line.startswith(("#", "-r"))}


def test_requirements_dev_adds_every_tool_the_tests_import_to_the_run_time_requirements():
    assert "-r requirements.txt" in read("requirements-dev.txt").splitlines()
    installed = requirement_names("requirements.txt") | requirement_names("requirements-dev.txt")
    needed = third_party_imports_of_the_tests() | {"ipykernel"}    # the notebook test's kernel
    assert needed and needed <= installed, f"missing from requirements-dev.txt: {needed - installed}"


def test_no_module_reaches_into_another_modules_private_names():
    """A helper used across modules is part of its module's interface: it has a public name and
    a docstring (STYLE.md, habit 10). So no module, experiment or app file calls `utils._x`, `train._x`..."""
    modules = {os.path.splitext(f)[0] for f in os.listdir(ROOT) if f.endswith(".py")}
    scripts = [os.path.join(ROOT, f) for f in os.listdir(ROOT) if f.endswith(".py")]
    scripts += [os.path.join(ROOT, folder, f) for folder in ("experiments", "app")
                for f in os.listdir(os.path.join(ROOT, folder)) if f.endswith(".py")]
    reached = []
    for path in scripts:
        with open(path) as f:
            tree = ast.parse(f.read())
        aliases = {a.asname or a.name: a.name for node in ast.walk(tree) if isinstance(node, ast.Import)
                   for a in node.names if a.name in modules}
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module in modules:        # from utils import _x
                reached += [f"{os.path.relpath(path, ROOT)}:{node.lineno} {node.module}.{a.name}"
                            for a in node.names if a.name.startswith("_")]
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                    and node.value.id in aliases and node.attr.startswith("_") and not node.attr.startswith("__")):
                reached.append(f"{os.path.relpath(path, ROOT)}:{node.lineno} {node.value.id}.{node.attr}")
    assert reached == []
    import plots
    for name in ("new_figure", "save_figure", "message_figure", "images_hwc"):
        assert getattr(plots, name).__doc__, name


def imports_of(path):
    """The project modules a file imports, at the top or inside a function."""
    modules = {os.path.splitext(f)[0] for f in os.listdir(ROOT) if f.endswith(".py")}
    tree = ast.parse(read(path))
    names = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    names |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module and not n.level}
    return names & modules


def test_no_two_modules_import_each_other_directly_or_in_a_loop():
    graph = {f[:-3]: imports_of(f) - {f[:-3]} for f in os.listdir(ROOT) if f.endswith(".py")}

    def reach(start):
        seen, todo = set(), [start]
        while todo:
            for nxt in graph.get(todo.pop(), ()):
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        return seen
    loops = sorted(m for m in graph if m in reach(m))
    assert loops == [], f"modules in an import loop: {loops}"
    assert "train" not in reach("predict"), "inference imports training code"
    for alone in ("custom_resnet", "lr_finder", "gradcam"):          # a student copies one file
        assert graph[alone] == set(), (alone, graph[alone])


def test_every_root_module_opens_with_one_line_saying_its_purpose():
    for f in sorted(os.listdir(ROOT)):
        if f.endswith(".py"):
            doc = ast.get_docstring(ast.parse(read(f)))
            assert doc and len(doc.split("\n", 1)[0]) > 20 and doc.split("\n", 1)[0].endswith((".", "?")), f
