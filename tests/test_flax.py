"""jinit in Flax, linen and nnx, against the real framework: layers, partitioning, module equality, retracing,
saving hyperparameters."""

import dataclasses

import pytest

pytest.importorskip("flax", reason="flax is an optional extra: pip install -e '.[flax]'")

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn
from flax import nnx

import jinit

KEY = jax.random.key(0)
jnn = jax.nn.initializers


def same_trees(a, b):
    return jax.tree.structure(a) == jax.tree.structure(b) and jax.tree.all(
        jax.tree.map(lambda x, y: x.dtype == y.dtype and bool(np.array_equal(x, y)), a, b)
    )


# jinit initializers next to their jax.nn.initializers twins: float32 values are bitwise JAX's, so a module
# initialized either way has the same parameters.
LINEN = [
    (lambda i: nn.Dense(5, kernel_init=i[0], bias_init=i[1]), (2, 3), (jinit.glorot_uniform(), jinit.zeros),
     (jnn.glorot_uniform(), jnn.zeros)),
    (lambda i: nn.Conv(4, (3, 3), kernel_init=i[0], bias_init=i[1]), (1, 8, 8, 3), (jinit.he_normal(), jinit.ones),
     (jnn.he_normal(), jnn.ones)),
    (lambda i: nn.Embed(11, 6, embedding_init=i[0]), None, (jinit.normal(0.02),), (jnn.normal(0.02),)),
]  # fmt: skip


@pytest.mark.parametrize("build, input_shape, ours, theirs", LINEN, ids=["Dense", "Conv", "Embed"])
def test_linen_layers_get_jax_values(build, input_shape, ours, theirs):
    x = jnp.ones(input_shape) if input_shape else jnp.arange(4)
    assert same_trees(build(ours).init(KEY, x), build(theirs).init(KEY, x))


def test_linen_partitioning():
    dense = nn.Dense(8, kernel_init=nn.with_partitioning(jinit.lecun_normal(), (None, "model")))
    boxed = dense.init(KEY, jnp.ones((2, 4)))
    kernel = boxed["params"]["kernel"]
    assert isinstance(kernel, nn.Partitioned) and kernel.names == (None, "model")
    plain = nn.Dense(8, kernel_init=jnn.lecun_normal()).init(KEY, jnp.ones((2, 4)))
    np.testing.assert_array_equal(nn.unbox(boxed)["params"]["kernel"], plain["params"]["kernel"])


def test_nnx_layers_and_partitioning():
    ours = nnx.Linear(3, 5, kernel_init=jinit.glorot_uniform(), bias_init=jinit.constant(0.5), rngs=nnx.Rngs(0))
    theirs = nnx.Linear(3, 5, kernel_init=jnn.glorot_uniform(), bias_init=jnn.constant(0.5), rngs=nnx.Rngs(0))
    assert same_trees(nnx.state(ours, nnx.Param), nnx.state(theirs, nnx.Param))
    conv = nnx.Conv(3, 4, (3, 3), kernel_init=jinit.he_uniform(), rngs=nnx.Rngs(1))
    twin = nnx.Conv(3, 4, (3, 3), kernel_init=jnn.he_uniform(), rngs=nnx.Rngs(1))
    np.testing.assert_array_equal(conv.kernel[...], twin.kernel[...])
    mesh = jax.make_mesh((1,), ("model",), axis_types=(jax.sharding.AxisType.Auto,))
    with jax.set_mesh(mesh):  # nnx shards a partitioned variable when it creates it
        sharded = nnx.Linear(4, 8, kernel_init=nnx.with_partitioning(jinit.orthogonal(), (None, "model")),
                             rngs=nnx.Rngs(0))  # fmt: skip
    assert sharded.kernel.get_metadata()["out_sharding"] == (None, "model")
    kernel = np.asarray(sharded.kernel[...])
    np.testing.assert_allclose(kernel @ kernel.T, np.eye(4), atol=1e-5)


def test_equal_initializers_make_equal_modules_and_no_retrace():
    def build():
        return nn.Dense(7, kernel_init=jinit.variance_scaling(2.0, "fan_avg", "uniform"), bias_init=jinit.zeros)

    a, b = build(), build()
    assert a is not b and a == b and hash(a) == hash(b)
    assert a != nn.Dense(7, kernel_init=jinit.variance_scaling(2.0, "fan_in", "uniform"), bias_init=jinit.zeros)
    traces = []

    @jax.jit(static_argnums=0)
    def init(module, key):
        traces.append(module)
        return module.init(key, jnp.ones((1, 3)))

    first, second = init(a, KEY), init(b, KEY)
    assert len(traces) == 1 and same_trees(first, second)


class MLP(nn.Module):
    features: tuple[int, ...]
    kernel_init: jinit.Initializer = jinit.he_normal()
    bias_init: jinit.Initializer = jinit.zeros

    @nn.compact
    def __call__(self, x):
        for width in self.features:
            x = nn.relu(nn.Dense(width, kernel_init=self.kernel_init, bias_init=self.bias_init)(x))
        return x


def test_hyperparameters_save_and_restore_through_serialize():
    module = MLP((8, 4), kernel_init=jinit.truncated_normal(0.3, mean=0.1), bias_init=jinit.constant(0.25))
    fields = {f.name: getattr(module, f.name) for f in dataclasses.fields(module) if f.name in ("features",
              "kernel_init", "bias_init")}  # fmt: skip
    saved = {k: jinit.serialize(v) if isinstance(v, jinit.Initializer) else list(v) for k, v in fields.items()}
    import json

    loaded = json.loads(json.dumps(saved))
    restored = MLP(tuple(loaded["features"]), jinit.deserialize(loaded["kernel_init"]),
                   jinit.deserialize(loaded["bias_init"]))  # fmt: skip
    assert restored == module
    x = jnp.ones((2, 3))
    assert same_trees(restored.init(KEY, x), module.init(KEY, x))


def test_init_like_reinitializes_a_linen_model():
    model = MLP((8, 4))
    abstract = jax.eval_shape(model.init, KEY, jnp.ones((1, 3)))
    params = jinit.init_like(KEY, abstract, [(r".*kernel", jinit.orthogonal()), (r".*bias", jinit.ones)])
    kernel = params["params"]["Dense_0"]["kernel"]
    assert kernel.shape == (3, 8)
    np.testing.assert_array_equal(kernel, jinit.orthogonal()(jinit.path_key(KEY, "params/Dense_0/kernel"), (3, 8)))
    assert model.apply(params, jnp.ones((1, 3))).shape == (1, 4)
