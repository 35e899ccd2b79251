"""Test configuration: strict rank promotion, as in JAX's own tests; warnings are errors (pyproject)."""

from pathlib import Path

import jax
import pytest

from jinit._src import constant, engine, orthogonal, tree

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


def pytest_ignore_collect(collection_path, config):
    """tests/sharded needs 8 simulated devices: test_sharded.py runs it in a process of its own. tests/multiprocess
    holds the processes that test_multiprocess.py launches, not tests."""
    if collection_path.parent == Path(__file__).parent:
        if collection_path.name == "sharded":
            return "sharded" not in {Path(arg).name for arg in config.args}
        if collection_path.name == "multiprocess":
            return True
    return None
