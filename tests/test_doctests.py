"""Run the examples in the docstrings of every module, subpackages and satellites included."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

PACKAGES = ("thoughtmdp", "thoughtmdp.envs", "thoughtmdp.agents", "thoughtmdp.learners")


def modules():
    # In an editable install the mapped folders are not below thoughtmdp/ on disk, so each is
    # walked on its own; in a wheel they are, and the walk of thoughtmdp reaches them too.
    names = set()
    for package in PACKAGES:
        path = importlib.import_module(package).__path__
        names.add(package)
        names.update(info.name for info in pkgutil.walk_packages(path, package + "."))
    return sorted(names)


def test_the_walk_reaches_subpackages_and_satellites():
    names = modules()
    for name in (
        "thoughtmdp.transport.security",
        "thoughtmdp.learners.schedule",
        "thoughtmdp.envs.sandbox.values",
        "thoughtmdp.agents.backends.scripted",
    ):
        assert name in names


@pytest.fixture
def registries_restored():
    """Names an example registers (a reset policy, a task) leave with the example."""
    from thoughtmdp.envs.math.answer_types import ANSWER_TYPES
    from thoughtmdp.episodes.reset_policies import RESET_POLICIES
    from thoughtmdp.mdp.task import TASKS

    saved = [
        (registry, dict(registry._entries)) for registry in (RESET_POLICIES, TASKS, ANSWER_TYPES)
    ]
    yield
    for registry, entries in saved:
        registry._entries.clear()
        registry._entries.update(entries)


@pytest.mark.parametrize("name", modules())
def test_docstring_examples(name, registries_restored):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0
