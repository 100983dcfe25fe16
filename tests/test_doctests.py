"""Run the examples in the docstrings of the core and the tasks."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import thoughtmdp
import thoughtmdp.envs


def modules():
    for package in (thoughtmdp, thoughtmdp.envs):
        for info in pkgutil.iter_modules(package.__path__, package.__name__ + "."):
            yield info.name


@pytest.mark.parametrize("name", sorted(modules()))
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0
