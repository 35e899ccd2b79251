"""Sharded initialization on 8 simulated CPU devices: every initializer gives bitwise the values it gives
unsharded, laid out as asked; the elementwise ones generate each shard on its own device."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import AxisType, NamedSharding
from jax.sharding import PartitionSpec as P

import jinit
from jinit._src import distributions as d
from jinit._src import engine

from cases import CASES, ids

KEY = jax.random.key(0)
AUTO, EXPLICIT = (AxisType.Auto,) * 2, (AxisType.Explicit,) * 2
MESHES = {
    "2x4_auto": jax.make_mesh((2, 4), ("a", "b"), axis_types=AUTO),
    "4x2_explicit": jax.make_mesh((4, 2), ("a", "b"), axis_types=EXPLICIT),
    "8x1_auto": jax.make_mesh((8, 1), ("a", "b"), axis_types=AUTO),
}
SPECS = [P("a", "b"), P("b", "a"), P(None, ("a", "b")), P(("b", "a"), None), P("a")]


def scaled(shape):
    """A case's first shape with its last two axes (or its only axis) 8 times longer: divisible by every mesh."""
    if len(shape) == 1:
        return (shape[0] * 8,)
    return (*shape[:-2], shape[-2] * 8, shape[-1] * 8)


def laid_out(spec, rank):
    """`spec` on the last two axes of a parameter of rank `rank` (its first axis if the rank is 1)."""
    if rank == 1:
        return P(spec[0] if len(spec) else None)
    return P(*([None] * (rank - 2)), *spec, *([None] * (2 - len(spec))))


def assert_same(x, expected, sharding):
    assert x.sharding.is_equivalent_to(sharding, x.ndim), (x.sharding, sharding)
    np.testing.assert_array_equal(np.asarray(x), np.asarray(expected))


@pytest.mark.parametrize(
    "case", [c for c in CASES if len(c.shapes[0]) >= 1], ids=ids([c for c in CASES if len(c.shapes[0]) >= 1])
)
def test_every_initializer_sharded_is_bitwise_unsharded(case):
    shape = scaled(case.shapes[0])
    mesh = MESHES["2x4_auto"]
    expected = case.init(KEY, shape)
    for spec in (P("a", "b"), P(None, ("a", "b"))):
        sharding = NamedSharding(mesh, laid_out(spec, len(shape)))
        assert_same(case.init(KEY, shape, out_sharding=sharding), expected, sharding)


ELEMENTWISE = [
    jinit.normal(0.02),
    jinit.truncated_normal(0.3),
    jinit.uniform(),
    jinit.random_uniform(-1.0, 2.0),
    jinit.glorot_uniform(),
    jinit.he_normal(),
    jinit.lecun_normal(),
    jinit.trunc_normal(0.0, 1.0, -1.5, 2.5),
]
WHOLE = [jinit.orthogonal(), jinit.orthogonal(2.0, column_axis=0), jinit.identity(1.5), jinit.zeros]


# Each initializer on one of the meshes, in turn (each mesh sees a third of them, elementwise and whole alike):
# the product of the two lists is what test_each_device_generates_only_its_shard covers for the laws.
PAIRS_ON_MESHES = [(list(MESHES)[i % len(MESHES)], init) for i, init in enumerate(ELEMENTWISE + WHOLE)]


@pytest.mark.parametrize("mesh_id, init", PAIRS_ON_MESHES, ids=[f"{m}-{init!r}" for m, init in PAIRS_ON_MESHES])
def test_meshes_and_partition_specs(mesh_id, init):
    mesh = MESHES[mesh_id]
    shape = (48, 64)
    expected = init(KEY, shape)
    for spec in SPECS:
        sharding = NamedSharding(mesh, spec)
        assert_same(init(KEY, shape, out_sharding=sharding), expected, sharding)
    with jax.set_mesh(mesh):  # a bare PartitionSpec names the axes of the mesh that is set
        assert_same(init(KEY, shape, out_sharding=P("b", "a")), expected, NamedSharding(mesh, P("b", "a")))


@pytest.mark.parametrize("dtype", ["bfloat16", "float16", "float64"])
def test_low_and_high_precision_sharded(dtype):
    with jax.enable_x64(dtype == "float64"):
        for init in (jinit.truncated_normal(), jinit.lecun_uniform(), jinit.orthogonal()):
            expected = init(KEY, (32, 16), dtype)
            sharding = NamedSharding(MESHES["4x2_explicit"], P("a", "b"))
            assert_same(init(KEY, (32, 16), dtype, out_sharding=sharding), expected, sharding)


LAWS = [
    d.Normal(0.02),
    d.Uniform(1.0, 0.0, 0.99999994),
    d.truncated_normal(0.5, None, -2.0, 2.0, -1.0, 1.0, np.dtype("float32")),
    d.RandomUniform(-1.0, 1.0, -1.0, 0.99999994),
    d.ScaledTruncatedNormal(0.1),
    d.ScaledNormal(0.1),
    d.ScaledUniform(0.1),
]


@pytest.mark.parametrize("law", LAWS, ids=[type(law).__name__ for law in LAWS])
@pytest.mark.parametrize("mesh", MESHES.values(), ids=MESHES)
def test_each_device_generates_only_its_shard(law, mesh):
    """The compiled program has no collective, its output per device is one shard, and its temporaries a few."""
    shape, dtype = (1024, 512), jnp.dtype("float32")
    sharding = NamedSharding(mesh, P("a", "b"))
    with jax.set_mesh(mesh):  # as `Initializer.__call__` does for a mesh with explicit axes
        compiled = engine._exact.lower(KEY, law, shape=shape, dtype=dtype, sharding=sharding, positioned=True).compile()
    text = compiled.as_text()
    assert not [op for op in ("all-gather", "all-reduce", "collective-permute", "all-to-all") if op in text]
    shard_bytes = 1024 * 512 * 4 // 8
    memory = compiled.memory_analysis()
    assert memory.output_size_in_bytes == shard_bytes
    assert memory.temp_size_in_bytes <= 4 * shard_bytes  # full size would be 8 shards


def gpt(layers, width=16):
    """A small GPT-shaped tree, sharded as in Megatron: columns of the first and rows of the second matmul."""
    col, row = P(None, "b"), P("b", None)
    blocks = {
        f"h{i}": {
            "attn": {"qkv": jinit.ParamSpec((width, 3 * width), jinit.normal(0.02), sharding=col),
                     "proj": jinit.ParamSpec((width, width), jinit.orthogonal(), sharding=row)},
            "mlp": {"fc": jinit.ParamSpec((width, 4 * width), jinit.he_uniform(), sharding=col),
                    "fc_bias": jinit.ParamSpec((4 * width,), jinit.zeros, sharding=P("b")),
                    "proj": jinit.ParamSpec((4 * width, width), jinit.truncated_normal(0.01), sharding=row)},
            "ln": jinit.ParamSpec((width,), jinit.ones),
        }
        for i in range(layers)
    }  # fmt: skip
    return {"wte": jinit.ParamSpec((64, width), jinit.normal(0.02), sharding=P(("a", "b"), None)), **blocks}


def unsharded(specs):
    return jax.tree.map(
        lambda s: jinit.ParamSpec(s.shape, s.init, s.dtype), specs, is_leaf=lambda x: isinstance(x, jinit.ParamSpec)
    )


def expected_sharding(spec, mesh):
    return NamedSharding(mesh, spec.sharding if spec.sharding is not None else P())


@pytest.mark.parametrize("mesh", MESHES.values(), ids=MESHES)
def test_init_tree_sharded_is_bitwise_unsharded(mesh):
    specs = gpt(3)
    expected = jinit.init_tree(KEY, unsharded(specs))
    is_spec = lambda x: isinstance(x, jinit.ParamSpec)  # noqa: E731
    with jax.set_mesh(mesh):  # JAX compiles a jit for a mesh of explicit axes only inside it
        jitted = jax.jit(lambda k: jinit.init_tree(k, specs, mesh=mesh))(KEY)
    for params in (jinit.init_tree(KEY, specs, mesh=mesh), jitted):
        jax.tree.map(
            lambda x, e, s: assert_same(x, e, expected_sharding(s, mesh)), params, expected, specs, is_leaf=is_spec
        )
    with jax.set_mesh(mesh):
        params = jinit.init_tree(KEY, specs)
    jax.tree.map(
        lambda x, e, s: assert_same(x, e, expected_sharding(s, mesh)), params, expected, specs, is_leaf=is_spec
    )


def test_init_like_keeps_named_shardings():
    mesh = MESHES["2x4_auto"]
    sharding = NamedSharding(mesh, P("a", "b"))
    abstract = {"w": jax.ShapeDtypeStruct((16, 8), jnp.float32, sharding=sharding),
                "b": jax.ShapeDtypeStruct((8,), jnp.float32)}  # fmt: skip
    params = jinit.init_like(KEY, abstract, [("w", jinit.glorot_normal()), ("b", jinit.zeros)])
    assert_same(params["w"], jinit.glorot_normal()(jinit.path_key(KEY, "w"), (16, 8)), sharding)


def test_sharding_must_divide_the_shape():
    mesh = MESHES["2x4_auto"]
    specs = {"w": jinit.ParamSpec((30, 56), jinit.normal(), sharding=P("b", "a"))}
    with pytest.raises(
        ValueError, match=r"'w'.*axis 0 \(of size 30\) 4 ways.*Received: sharding=(P|PartitionSpec)\('b', 'a'\)"
    ):
        jinit.init_tree(KEY, specs, mesh=mesh)
    specs = {"w": jinit.ParamSpec((8,), jinit.normal(), sharding=NamedSharding(mesh, P("a", "b")))}
    with pytest.raises(ValueError, match=r"'w'.*names 2 axes.*shape has 1"):
        jinit.init_tree(KEY, specs)


PAIRS = [
    (jinit.zeros, jax.nn.initializers.zeros),
    (jinit.ones, jax.nn.initializers.ones),
    (jinit.constant(0.5), jax.nn.initializers.constant(0.5)),
    (jinit.normal(0.3), jax.nn.initializers.normal(0.3)),
    (jinit.glorot_uniform(), jax.nn.initializers.glorot_uniform()),
]


@pytest.mark.parametrize("ours, theirs", PAIRS, ids=["zeros", "ones", "constant", "normal", "glorot_uniform"])
def test_the_sharding_is_jaxs_to_the_letter(ours, theirs):
    """`P('a')` on a matrix comes back as JAX returns it, `P('a', None)`: equal, not only equivalent."""
    mesh = MESHES["4x2_explicit"]
    sharding = NamedSharding(mesh, P("a"))
    with jax.set_mesh(mesh):
        expected = theirs(KEY, (8, 4), jnp.float32, out_sharding=sharding)
        x = ours(KEY, (8, 4), jnp.float32, out_sharding=sharding)
    assert expected.sharding.spec == P("a", None)
    assert x.sharding == expected.sharding
    np.testing.assert_array_equal(x, expected)
    auto = NamedSharding(MESHES["2x4_auto"], P("a"))
    assert ours(KEY, (8, 4), out_sharding=auto).sharding == NamedSharding(MESHES["2x4_auto"], P("a", None))


@pytest.mark.parametrize("init", [jinit.constant(np.arange(4.0)), jinit.identity(2.0), jinit.constant(3.0)])
def test_constants_laid_out_on_an_auto_mesh(init):
    """An array-valued constant on a mesh of auto axes: replicated is the whole mesh (it came back on one device),
    and `P('a')` works (it failed inside `jnp.broadcast_to`)."""
    mesh = MESHES["2x4_auto"]
    specs = {"r": jinit.ParamSpec((8, 4), init), "s": jinit.ParamSpec((8, 4), init, sharding=P("a"))}
    params = jinit.init_tree(KEY, specs, mesh=mesh)
    assert_same(params["r"], init(None, (8, 4)), NamedSharding(mesh, P()))
    assert_same(params["s"], init(None, (8, 4)), NamedSharding(mesh, P("a")))


def test_init_tree_keeps_a_committed_keys_device():
    """Without a mesh, every leaf is on the device of a key committed to one, as the leaf's own call puts it."""
    device = jax.devices()[3]
    key = jax.device_put(KEY, device)
    specs = {"w": jinit.ParamSpec((40, 30), jinit.normal()), "b": jinit.ParamSpec((30,), jinit.zeros),
             "big": jinit.ParamSpec((600, 600), jinit.he_uniform())}  # fmt: skip
    for name, x in jinit.init_tree(key, specs).items():
        alone = specs[name].init(jinit.path_key(key, name), specs[name].shape)
        assert x.devices() == alone.devices(), name
        assert name == "b" or x.devices() == {device}  # zeros take no key: JAX's default device, as alone
        np.testing.assert_array_equal(x, alone)
