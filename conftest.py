"""Doctests of the framework integrations run only where their framework is installed (`make test` installs
them all); without it, the module is left out of collection rather than failing to import.

The run shares one persistent compilation cache (`pytest_configure`): most of the suite's time is XLA compiling
small programs, many of them the same in both of ``pytest -n auto``'s workers and in the processes tests start
(the examples, the 8-device and multi-process runs).
"""

import importlib.util
import os
import shutil
import tempfile

import jax
import pytest

from jinit._src import base

collect_ignore = [f"src/jinit/{module}.py" for module in ("haiku", "keras") if importlib.util.find_spec(module) is None]

_CACHE = pytest.StashKey[str]()


def pytest_configure(config):
    """A new compilation cache for this run, in a temporary directory that `pytest_unconfigure` removes, unless
    ``JAX_COMPILATION_CACHE_DIR`` is set (a user's own, or this run's in a worker or a process a test started).

    Every program is cached (by default JAX caches only those that took a second to compile). A cached program is
    the same executable, so no value changes, and JAX reports loading it as it reports a compilation
    (``/jax/core/compile/backend_compile_duration``), which is what the tests that count compilations count.
    Measured on a 2-core Xeon (``pytest -n auto --durations=0``): three runs with it took 608, 624 and 648 s, one
    without it 771 s; the tests' own times summed to 1156-1223 s against 1438 s.
    """
    if os.environ.get("JAX_COMPILATION_CACHE_DIR") or hasattr(config, "workerinput"):
        return
    directory = tempfile.mkdtemp(prefix="jinit-tests-xla-cache-")
    config.stash[_CACHE] = directory
    try:  # this process has imported JAX already
        jax.config.update("jax_compilation_cache_dir", directory)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    except AttributeError:  # a JAX without these options: the run compiles as JAX does by default
        return
    # the environment reaches xdist's workers and every process a test starts
    os.environ.update(JAX_COMPILATION_CACHE_DIR=directory, JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0")


def pytest_unconfigure(config):
    directory = config.stash.get(_CACHE, None)
    if directory is not None:
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(autouse=True)
def _restore_registered_names():
    """Names that a test or a doctest registers (`jinit.register`) are unregistered after it."""
    saved = base.classes()
    yield
    for name in set(base.classes()) - set(saved):
        base.forget(name)
