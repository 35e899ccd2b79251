"""Doctests of the framework integrations run only where their framework is installed (`make test` installs
them all); without it, the module is left out of collection rather than failing to import."""

import importlib.util

import pytest

from jinit._src import base

collect_ignore = [f"src/jinit/{module}.py" for module in ("haiku", "keras") if importlib.util.find_spec(module) is None]


@pytest.fixture(autouse=True)
def _restore_registered_names():
    """Names that a test or a doctest registers (`jinit.register`) are unregistered after it."""
    saved = base.classes()
    yield
    for name in set(base.classes()) - set(saved):
        base.forget(name)
