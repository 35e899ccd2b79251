"""jinit.init_like with a real Equinox model: re-initializing an eqx.nn.MLP by path patterns and eqx.tree_at."""

import pytest

eqx = pytest.importorskip("equinox", reason="equinox is an optional extra: pip install -e '.[equinox]'")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import jinit  # noqa: E402

KEY = jax.random.key(0)


def test_reinitialize_an_mlp():
    model = eqx.nn.MLP(3, 2, width_size=8, depth=2, key=jax.random.key(1))
    params = eqx.filter(model, eqx.is_array)
    rules = [(r"layers/\d+/weight", jinit.orthogonal()), (r"layers/\d+/bias", jinit.zeros)]
    fresh = jinit.init_like(KEY, params, rules)
    model = eqx.tree_at(lambda m: [layer.weight for layer in m.layers], model, [layer.weight for layer in fresh.layers])
    model = eqx.tree_at(lambda m: [layer.bias for layer in m.layers], model, [layer.bias for layer in fresh.layers])
    for i, layer in enumerate(model.layers):
        expected = jinit.orthogonal()(jinit.path_key(KEY, f"layers/{i}/weight"), layer.weight.shape)
        np.testing.assert_array_equal(layer.weight, expected)
        np.testing.assert_array_equal(layer.bias, np.zeros(layer.bias.shape, np.float32))
    assert model(jnp.ones(3)).shape == (2,)
