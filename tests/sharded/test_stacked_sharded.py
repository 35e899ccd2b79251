"""Stacked layers created sharded by jinit's integrations, on 8 simulated devices: the stacked axis unsharded and
sharded, each parameter with the sharding its metadata asks for and bitwise the unsharded framework's values; and,
for every PRNG implementation, sharded values equal to the unsharded ones (docs/guides/sharding.md)."""

import pytest

pytest.importorskip("flax", reason="flax is an optional extra: pip install -e '.[flax]'")
eqx = pytest.importorskip("equinox", reason="equinox is an optional extra: pip install -e '.[equinox]'")

import flax.linen as nn  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from flax import nnx  # noqa: E402
from jax.sharding import NamedSharding  # noqa: E402
from jax.sharding import PartitionSpec as P  # noqa: E402

import jinit  # noqa: E402
import jinit.equinox  # noqa: E402
import jinit.flax  # noqa: E402

KEY = jax.random.key(0)
X = jnp.linspace(-1, 1, 32).reshape(2, 16)
MESH = jax.make_mesh((2, 4), ("data", "model"), axis_types=(jax.sharding.AxisType.Auto,) * 2)


def bitwise(a, b):
    """The same leaves, bitwise (metadata aside: on a mesh, NNX's `eager_sharding` is False, as documented)."""
    a, b = jax.tree.leaves(a), jax.tree.leaves(b)
    if len(a) != len(b):
        return False
    return all(np.asarray(x).tobytes() == np.asarray(y).tobytes() for x, y in zip(a, b, strict=True))


class Block(nn.Module):
    @nn.compact
    def __call__(self, x, _=None):
        h = nn.Dense(32, kernel_init=nn.with_partitioning(jinit.normal(0.02), (None, "model")))(x)
        h = nn.Dense(16, kernel_init=nn.with_partitioning(jinit.he_uniform(), ("model", None)))(nn.gelu(h))
        return x + h, None


@pytest.mark.parametrize("layers_axis", [None, "data"], ids=["stack unsharded", "stack over data"])
def test_linen_scan_created_sharded(layers_axis):
    module = nn.scan(
        Block, variable_axes={"params": 0}, split_rngs={"params": True}, length=4,
        metadata_params={nn.PARTITION_NAME: layers_axis},
    )()  # fmt: skip
    ours = jinit.flax.init(module, KEY, X, None, mesh=MESH)
    reference = module.init(KEY, X, None)
    assert bitwise(nn.unbox(ours), nn.unbox(reference))
    kernel = ours["params"]["Dense_0"]["kernel"]
    assert kernel.value.shape == (4, 16, 32)
    expected = NamedSharding(MESH, P(layers_axis, None, "model"))
    assert kernel.value.sharding.is_equivalent_to(expected, 3)
    assert ours["params"]["Dense_1"]["kernel"].value.sharding.is_equivalent_to(
        NamedSharding(MESH, P(layers_axis, "model", None)), 3
    )


class NNXBlock(nnx.Module):
    def __init__(self, rngs, init):
        init = nnx.with_partitioning(init, (None, "model"))
        self.linear = nnx.Linear(16, 32, kernel_init=init, bias_init=jinit.zeros, rngs=rngs)


@pytest.mark.parametrize("init", [jinit.lecun_normal(), nnx.initializers.lecun_normal()], ids=["jinit", "flax"])
@pytest.mark.parametrize("layers_axis", [None, "data"], ids=["stack unsharded", "stack over data"])
def test_nnx_vmap_created_sharded(layers_axis, init, drawn):
    """A stack of jinit's initializer, and of Flax's own (JAX's draw of the vmap's keys, `jinit._src.jax_draws`),
    drawn by the engine with the sharding of its metadata."""

    def make(key):
        @nnx.split_rngs(splits=4)
        @nnx.vmap(in_axes=(0,), out_axes=0, transform_metadata={nnx.PARTITION_NAME: layers_axis})
        def stack(rngs):
            return NNXBlock(rngs, init)

        return stack(nnx.Rngs(key))

    with jax.set_mesh(MESH):
        ours = jinit.flax.build(make, KEY)
        reference = make(KEY)
    assert bitwise(nnx.state(ours), nnx.state(reference))
    kernel = ours.linear.kernel[...]
    assert kernel.shape == (4, 16, 32)
    assert kernel.sharding.is_equivalent_to(NamedSharding(MESH, P(layers_axis, None, "model")), 3)
    assert "linear/kernel" in drawn


class Linear(eqx.Module):
    weight: jax.Array

    def __init__(self, key):
        self.weight = jinit.glorot_uniform()(key, (16, 32))


class Stack(eqx.Module):
    layers: Linear

    def __init__(self, key):
        self.layers = eqx.filter_vmap(Linear)(jax.random.split(key, 4))


def test_equinox_stack_created_sharded_by_path_rules():
    ours = jinit.equinox.build(Stack, KEY, mesh=MESH, shardings=[(r"layers/weight", P("data", None, "model"))])
    assert bitwise(ours.layers.weight, Stack(KEY).layers.weight)
    assert ours.layers.weight.sharding.is_equivalent_to(NamedSharding(MESH, P("data", None, "model")), 3)


MESHES = {
    "2x4": jax.make_mesh((2, 4), ("a", "b"), axis_types=(jax.sharding.AxisType.Auto,) * 2),
    "8x1": jax.make_mesh((8, 1), ("a", "b"), axis_types=(jax.sharding.AxisType.Auto,) * 2),
    "1x2": jax.make_mesh((1, 2), ("a", "b"), axis_types=(jax.sharding.AxisType.Auto,) * 2, devices=jax.devices()[:2]),
}
IMPLS = ["threefry2x32", "threefry2x32 not partitionable", "rbg", "unsafe_rbg", "philox2x32", "philox4x32",
         "threefry4x32"]  # fmt: skip


@pytest.mark.parametrize("impl", IMPLS)
def test_every_implementation_gives_the_unsharded_values_on_every_mesh(impl, key_of):
    """docs/guides/sharding.md's table, measured: a layout changes no value, whatever the implementation (for
    philox, whose sharded draw jax 0.10.2 fails to compile, jinit draws the whole array, then lays it out)."""
    with jax.threefry_partitionable("not partitionable" not in impl):
        key = key_of(5, impl.split()[0])
        specs = {"w": jinit.ParamSpec((64, 32), jinit.normal(0.02), sharding=P("a", "b")),
                 "u": jinit.ParamSpec((32, 64), jinit.glorot_uniform(), sharding=P("b", "a"))}  # fmt: skip
        plain = {name: jinit.ParamSpec(spec.shape, spec.init) for name, spec in specs.items()}
        unsharded = jinit.init_tree(key, plain)
        for mesh in MESHES.values():
            sharded = jinit.init_tree(key, specs, mesh=mesh)
            assert bitwise(sharded, unsharded)
            assert sharded["w"].sharding.is_equivalent_to(NamedSharding(mesh, P("a", "b")), 2)
