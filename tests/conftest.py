"""Test configuration: strict rank promotion, as in JAX's own tests; warnings are errors (pyproject)."""

from pathlib import Path

import jax
import pytest

from jinit._src import constant, engine, orthogonal, plan, tree

jax.config.update("jax_numpy_rank_promotion", "raise")


@pytest.fixture
def no_arrays(monkeypatch):
    """Makes every way jinit allocates an array fail loudly, so an error must come before allocation."""

    def allocated(*args, **kwargs):
        raise AssertionError("an array was allocated before the error")

    for module, name in [
        (engine, "draw"),
        (orthogonal, "_orthogonal_kernel"),
        (orthogonal, "_delta_orthogonal_kernel"),
        (constant.jnp, "full"),
        (constant.jnp, "zeros"),
        (constant.jnp, "ones"),
        (constant.jnp, "eye"),
        (tree, "_derive"),
    ]:
        monkeypatch.setattr(module, name, allocated)


@pytest.fixture
def drawn(monkeypatch):
    """The paths of the parameters that the engine draws, call by call (each plan's sites)."""
    paths = []
    real = plan.Plan.__call__

    def spy(self, *args, **kwargs):
        paths.extend(self.drawn)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(plan.Plan, "__call__", spy)
    return paths


@pytest.fixture
def key_of():
    """``jax.random.key(seed, impl=impl)``, or a skip where this JAX does not ship implementation `impl` (jax 0.9
    has no philox or threefry4x32)."""

    def make(seed, impl):
        try:
            return jax.random.key(seed, impl=impl)
        except ValueError as error:
            if "unrecognized PRNG implementation" not in str(error):
                raise
            pytest.skip(f"this JAX does not ship the {impl} implementation")

    return make


def pytest_ignore_collect(collection_path, config):
    """tests/sharded needs 8 simulated devices: test_sharded.py runs it in a process of its own. tests/multiprocess
    holds the processes that test_multiprocess.py launches, not tests."""
    if collection_path.parent == Path(__file__).parent:
        if collection_path.name == "sharded":
            return "sharded" not in {Path(arg).name for arg in config.args}
        if collection_path.name == "multiprocess":
            return True
    return None


FIRST = {"tests/test_sharded.py::test_sharding_on_eight_simulated_devices"}
"""Tests that take minutes of one worker (here, a process of 8 simulated devices running tests/sharded)."""


def pytest_collection_modifyitems(config, items):
    """`FIRST` before every other test, the rest in their order: under ``pytest -n auto`` each worker runs its tests
    in order, and the 8-device process, collected near the end, kept one worker busy long after the other had
    finished: 534 and 445 s of tests on the two workers of a 2-core run, against 522 and 520 s with it first."""
    items.sort(key=lambda item: item.nodeid not in FIRST)
