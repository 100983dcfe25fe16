"""Layout rules: a light core, one-way imports, no stray top-level packages, small folders."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "transformers", "vllm", "peft", "deepspeed")
SATELLITES = ("thoughtmdp.envs", "thoughtmdp.agents", "thoughtmdp.learners")
APP_LAYER = ("cli.py", "commands", "evaluation", "training")  # below thoughtmdp/
SANDBOX_CHILD = ("runner.py", "confine.py", "rootfs.py", "seccomp.py", "streams.py", "values.py")
MAX_MODULES = 12  # per folder, __init__.py aside; past that a folder splits into subpackages


def imports_of(path: Path) -> list[tuple[str, bool]]:
    """(module, at module level) for every absolute import of a file; relative ones resolved."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []

    def visit(node: ast.AST, lazy: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = lazy or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
            if isinstance(child, ast.Import):
                found.extend((alias.name, not lazy) for alias in child.names)
            elif isinstance(child, ast.ImportFrom) and child.level == 0 and child.module:
                found.extend((f"{child.module}.{a.name}", not lazy) for a in child.names)
            visit(child, inner)

    visit(tree, lazy=False)
    return found


def is_under(module: str, packages: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in packages)


def core_files(app_layer: bool) -> list[Path]:
    """The core's files inside (or outside) the application layer."""
    root = ROOT / "thoughtmdp"
    return [
        path
        for path in root.rglob("*.py")
        if (path.relative_to(root).parts[0] in APP_LAYER) == app_layer
    ]


def imported_modules(folder: str) -> set[tuple[str, str]]:
    """(file, module) for every absolute import in a folder, at any depth of the code."""
    found = set()
    for path in (ROOT / folder).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                found |= {(path.name, alias.name) for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add((path.name, node.module))
    return found


def run_python(code: str, cwd: Path) -> str:
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, check=True
    )
    return result.stdout.strip()


def test_import_thoughtmdp_loads_no_heavy_dependency(tmp_path):
    code = f"import sys, thoughtmdp; print([m for m in {HEAVY!r} if m in sys.modules])"
    assert run_python(code, tmp_path) == "[]"


def test_cli_help_loads_no_heavy_dependency(tmp_path):
    code = (
        "import sys, contextlib, io\n"
        "from thoughtmdp.cli import main\n"
        "with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):\n"
        "    main(['--help'])\n"
        f"print([m for m in {HEAVY!r} if m in sys.modules])"
    )
    assert run_python(code, tmp_path) == "[]"


def test_subpackages_map_to_their_folders_and_nothing_top_level(tmp_path):
    code = (
        "import importlib, importlib.util, pathlib\n"
        "for name in ('agents', 'envs', 'learners'):\n"
        "    assert importlib.util.find_spec(name) is None, name\n"
        "    module = importlib.import_module('thoughtmdp.' + name)\n"
        "    print(pathlib.Path(module.__file__).parent.name)"
    )
    assert run_python(code, tmp_path).split() == ["agents", "envs", "learners"]


@pytest.mark.parametrize(("folder", "forbidden"), [("agents", "learners"), ("learners", "agents")])
def test_agents_and_learners_never_import_each_other(folder, forbidden):
    offenders = {
        (file, module)
        for file, module in imported_modules(folder)
        if module.split(".")[:2] == ["thoughtmdp", forbidden] or module.split(".")[0] == forbidden
    }
    assert not offenders


@pytest.mark.parametrize("folder", ["thoughtmdp", "envs", "agents", "learners"])
def test_no_top_level_import_of_mapped_folders(folder):
    offenders = {
        (f, m)
        for f, m in imported_modules(folder)
        if m.split(".")[0] in ("agents", "envs", "learners")
    }
    assert not offenders, "import them as thoughtmdp.agents / thoughtmdp.envs / thoughtmdp.learners"


def test_core_imports_only_light_modules_at_module_level():
    heavy = set(HEAVY)
    offenders = set()
    for path in (ROOT / "thoughtmdp").rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in tree.body:  # module level only: lazy imports inside functions are fine
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            offenders |= {(path.name, n) for n in names if n.split(".")[0] in heavy}
    assert not offenders


def test_core_never_imports_a_satellite():
    offenders = {
        (str(path.relative_to(ROOT)), module)
        for path in core_files(app_layer=False)
        for module, _ in imports_of(path)
        if is_under(module, SATELLITES)
    }
    assert not offenders, "only the application layer (commands, evaluation, training) may"


def test_application_layer_imports_satellites_only_lazily():
    offenders = {
        (str(path.relative_to(ROOT)), module)
        for path in core_files(app_layer=True)
        for module, top in imports_of(path)
        if top and is_under(module, SATELLITES)
    }
    assert not offenders, "import satellites inside the function that needs them"


@pytest.mark.parametrize(
    ("folder", "forbidden"),
    [
        ("envs", ("thoughtmdp.agents", "thoughtmdp.learners")),
        ("envs/sandbox", ("thoughtmdp.envs.livecodebench", "thoughtmdp.envs.math")),
    ],
)
def test_tasks_and_the_sandbox_import_only_downwards(folder, forbidden):
    offenders = {
        (str(path.relative_to(ROOT)), module)
        for path in (ROOT / folder).rglob("*.py")
        for module, _ in imports_of(path)
        if is_under(module, forbidden)
    }
    assert not offenders


@pytest.mark.parametrize("name", SANDBOX_CHILD)
def test_sandbox_child_modules_import_only_the_standard_library(name):
    # the child imports these files as top-level modules, before and after confining itself
    modules = {module.split(".")[0] for module, _ in imports_of(ROOT / "envs/sandbox" / name)}
    siblings = {Path(child).stem for child in SANDBOX_CHILD}
    assert modules <= set(sys.stdlib_module_names) | siblings | {"__future__"}
    assert not siblings & set(sys.stdlib_module_names), "a sibling would shadow the stdlib"


def test_no_folder_holds_more_than_a_dozen_modules():
    crowded = {}
    for folder in ("thoughtmdp", "envs", "agents", "learners"):
        for package in [ROOT / folder, *(ROOT / folder).rglob("*/")]:
            modules = [p for p in package.glob("*.py") if p.name != "__init__.py"]
            if len(modules) > MAX_MODULES:
                crowded[str(package.relative_to(ROOT))] = len(modules)
    assert not crowded
