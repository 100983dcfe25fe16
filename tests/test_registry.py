"""Task registry: registration, lazy loading, entry points, errors."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap

import pytest

from thoughtmdp import (
    TASKS,
    ThoughtMDPError,
    UnknownNameError,
    VerifiableTask,
    make_task,
    register_task,
)
from thoughtmdp.mdp.task import describe_tasks
from thoughtmdp.registry import Registry, load_object


def test_unknown_task_lists_known_tasks():
    with pytest.raises(UnknownNameError) as caught:
        make_task("arith_chian")
    message = str(caught.value)
    assert message.startswith(
        "unknown task 'arith_chian'. Did you mean 'arith_chain'? Known tasks: "
    )
    for name in ("arith_chain", "math", "reasoning_gym"):
        assert name in message


def test_register_by_call_decorator_and_lazy_string():
    registry: Registry[object] = Registry("widget", "thoughtmdp.test_widgets")
    registry.register("lazy", "collections:OrderedDict")
    assert registry._entries["lazy"] == "collections:OrderedDict"  # nothing imported yet

    @registry.register("decorated")
    class Widget:
        pass

    assert registry.get("decorated") is Widget
    from collections import OrderedDict

    assert registry.get("lazy") is OrderedDict
    assert registry.names() == ["decorated", "lazy"]
    assert "lazy" in registry and "other" not in registry


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("collections", "expected 'module:attr', got 'collections'"),
        ("collections:Nope", "'collections:Nope': module 'collections' has no 'Nope'"),
    ],
)
def test_load_object_errors(target, message):
    with pytest.raises(ThoughtMDPError, match=f"^{re.escape(message)}$"):
        load_object(target)


def test_factory_must_build_a_task():
    register_task("not_a_task", "collections:OrderedDict")
    with pytest.raises(
        ThoughtMDPError, match=r"^task 'not_a_task' built a OrderedDict, not a VerifiableTask$"
    ):
        make_task("not_a_task")
    TASKS._entries.pop("not_a_task")


def test_latest_registration_wins():
    class Mine(VerifiableTask):
        def problems(self, split):
            return []

        def score(self, problem, thoughts):
            raise NotImplementedError

    register_task("override_me", "collections:OrderedDict")
    register_task("override_me", Mine)
    assert isinstance(make_task("override_me"), Mine)
    TASKS._entries.pop("override_me")


def test_third_party_task_through_entry_point(tmp_path):
    """A distribution on sys.path declaring `thoughtmdp.tasks` is found, lazily."""
    (tmp_path / "my_tasks.py").write_text(
        textwrap.dedent(
            '''
            from thoughtmdp import Problem, Score, VerifiableTask

            class Echo(VerifiableTask):
                """Echo task from a plug-in."""
                name = "echo"
                def problems(self, split):
                    return [Problem(f"{split}/0", "say 1", "1", split)]
                def score(self, problem, thoughts):
                    return Score(1.0)
            '''
        )
    )
    dist = tmp_path / "my_tasks-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: my-tasks\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[thoughtmdp.tasks]\necho = my_tasks:Echo\n")
    script = (
        "import sys, thoughtmdp\n"
        "assert 'my_tasks' not in sys.modules\n"
        "print(thoughtmdp.make_task('echo').problems('train')[0].question)\n"
    )
    env = {"PYTHONPATH": str(tmp_path)}
    out = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout == "say 1\n"
    listing = subprocess.run(
        [sys.executable, "-m", "thoughtmdp.cli", "tasks"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert re.search(r"^echo +Echo task from a plug-in\.$", listing.stdout, re.MULTILINE)


def test_describe_tasks_survives_a_broken_entry():
    register_task("broken", "no_such_module_xyz:Task")
    try:
        line = next(line for line in describe_tasks() if line.startswith("broken"))
        assert (
            "(cannot be loaded: ModuleNotFoundError: No module named 'no_such_module_xyz')" in line
        )
    finally:
        TASKS._entries.pop("broken")


def test_bad_name_rejected():
    with pytest.raises(ThoughtMDPError, match=r"^a task name must be a non-empty str, got ''$"):
        register_task("", "collections:OrderedDict")
