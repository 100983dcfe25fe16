"""Layout rules: a light core, one-way imports, no stray top-level packages."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "transformers", "vllm", "peft", "deepspeed")


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
