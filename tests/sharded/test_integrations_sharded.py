"""Flax linen, Flax NNX and Haiku models created sharded by jinit's integrations, on 8 simulated devices: each
parameter has the sharding its metadata asks for, and bitwise the values of the unsharded initialization."""

import pytest

pytest.importorskip("flax", reason="flax is an optional extra: pip install -e '.[flax]'")
pytest.importorskip("haiku", reason="haiku is an optional extra: pip install -e '.[haiku]'")

import flax.linen as nn
import haiku as hk
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import AxisType, NamedSharding
from jax.sharding import PartitionSpec as P

import jinit
import jinit.flax
import jinit.haiku
from jinit._src import plan

KEY = jax.random.key(0)
MESHES = [((2, 4), ("data", "model")), ((8, 1), ("data", "model")), ((1, 8), ("data", "model"))]


def mesh_of(shape, names):
    return jax.make_mesh(shape, names, axis_types=(jax.sharding.AxisType.Auto,) * 2)


class Partitioned(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = nn.Dense(
            16,
            kernel_init=nn.with_partitioning(jinit.he_normal(), ("data", "model")),
            bias_init=nn.with_partitioning(jinit.zeros, ("model",)),
        )(x)
        x = nn.Dense(8, kernel_init=nn.with_logical_partitioning(jinit.glorot_uniform(), ("embed", "mlp")))(x)
        x = nn.Dense(8, kernel_init=nn.with_partitioning(jinit.orthogonal(), ("model", None)))(x)
        return nn.Dense(4, kernel_init=jinit.normal(0.02))(x)  # no metadata: replicated


RULES = (("embed", "data"), ("mlp", "model"))
X = jnp.ones((2, 8))


@pytest.mark.parametrize("shape, names", MESHES)
def test_linen_parameters_are_created_with_their_sharding_and_unsharded_values(shape, names):
    mesh = mesh_of(shape, names)
    with nn.logical_axis_rules(RULES):
        ours = jinit.flax.init(Partitioned(), KEY, X, mesh=mesh)
    reference = nn.unbox(Partitioned().init(KEY, X))
    values = nn.unbox(ours)
    assert jax.tree.all(jax.tree.map(lambda a, b: bool(np.array_equal(a, b)), values, reference))
    params = ours["params"]
    expected = {
        ("Dense_0", "kernel"): P("data", "model"), ("Dense_0", "bias"): P("model"),
        ("Dense_1", "kernel"): P("data", "model"), ("Dense_2", "kernel"): P("model", None),
        ("Dense_3", "kernel"): P(), ("Dense_3", "bias"): P(),
    }  # fmt: skip
    for (layer, name), spec in expected.items():
        array = nn.unbox(params[layer][name])
        assert array.sharding.is_equivalent_to(NamedSharding(mesh, spec), array.ndim), (layer, name, array.sharding)


class Heads(nn.Module):
    """Attention whose projections (DenseGeneral kernels: the initializer's result reshaped) are partitioned."""

    @nn.compact
    def __call__(self, x):
        x = nn.Dense(16, kernel_init=jinit.normal(0.02))(x)
        return nn.MultiHeadDotProductAttention(
            num_heads=8,
            qkv_features=64,
            kernel_init=nn.with_partitioning(jinit.glorot_uniform(), (None, "model", None)),
            bias_init=jinit.zeros,
            deterministic=True,
        )(x[:, None, :])


@pytest.fixture
def drawn(monkeypatch):
    """The path and sharding of every parameter that the engine draws."""
    leaves = {}
    real = plan.Plan.__call__

    def spy(self, *args, **kwargs):
        leaves.update((self.program.paths[s.leaf], self.program.shardings[s.leaf]) for s in self.found.sites)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(plan.Plan, "__call__", spy)
    return leaves


def _init_on(module, mesh):
    """`jinit.flax.init` of `module` on `mesh`, unboxed, checked bitwise against the unsharded `module.init`."""
    ours = nn.unbox(jinit.flax.init(module, KEY, X, mesh=mesh))
    reference = nn.unbox(module.init(KEY, X))
    assert jax.tree.all(jax.tree.map(lambda a, b: bool(np.array_equal(a, b)), ours, reference))
    return ours


@pytest.mark.parametrize("shape, names", MESHES)
def test_linen_reshaped_partitioned_kernels_are_drawn_sharded(shape, names, drawn):
    mesh = mesh_of(shape, names)
    ours = _init_on(Heads(), mesh)
    attention = ours["params"]["MultiHeadDotProductAttention_0"]
    for name in ("query", "key", "value"):  # (features, heads, head_dim), the heads over "model"
        kernel = attention[name]["kernel"]
        assert kernel.sharding.is_equivalent_to(NamedSharding(mesh, P(None, "model", None)), 3), name
        # drawn by the engine (the initializer's (features, heads * head_dim) reshaped), with the leaf's sharding
        assert drawn[f"params/MultiHeadDotProductAttention_0/{name}/kernel"].is_equivalent_to(kernel.sharding, 3)
    out = attention["out"]["kernel"]  # (heads, head_dim, features): "model" on its heads
    assert out.sharding.is_equivalent_to(NamedSharding(mesh, P(None, "model", None)), 3)
    assert drawn["params/MultiHeadDotProductAttention_0/out/kernel"].is_equivalent_to(out.sharding, 3)


class Defaults(nn.Module):
    """Flax's own initializers (JAX's draws, `jinit._src.jax_draws`), partitioned as a user partitions them."""

    @nn.compact
    def __call__(self, x):
        x = nn.Dense(16, kernel_init=nn.with_partitioning(nn.initializers.lecun_normal(), ("data", "model")))(x)
        x = nn.Dense(8, kernel_init=nn.with_partitioning(nn.initializers.glorot_uniform(), ("model", None)))(x)
        return nn.Dense(8, kernel_init=nn.with_partitioning(nn.initializers.normal(0.02), (None, "model")))(x)


@pytest.mark.parametrize("shape, names", MESHES)
def test_jaxs_own_initializers_are_drawn_sharded_with_their_eager_values(shape, names, drawn):
    mesh = mesh_of(shape, names)
    ours = _init_on(Defaults(), mesh)
    for layer, spec in (("Dense_0", P("data", "model")), ("Dense_1", P("model", None)), ("Dense_2", P(None, "model"))):
        kernel = ours["params"][layer]["kernel"]
        assert kernel.sharding.is_equivalent_to(NamedSharding(mesh, spec), 2), layer
        assert drawn[f"params/{layer}/kernel"].is_equivalent_to(kernel.sharding, 2), layer
    assert not any(path.endswith("bias") for path in drawn)  # Flax's zeros: computed by the program


def test_linen_without_a_mesh_keeps_the_metadata_only():
    ours = jinit.flax.init(Partitioned(), KEY, X)
    assert isinstance(ours["params"]["Dense_0"]["kernel"], nn.Partitioned)
    assert len(nn.unbox(ours)["params"]["Dense_0"]["kernel"].sharding.device_set) == 1


def test_linen_under_the_mesh_set_by_jax_set_mesh():
    mesh = mesh_of((2, 4), ("data", "model"))
    with jax.set_mesh(mesh), nn.logical_axis_rules(RULES):
        ours = jinit.flax.init(Partitioned(), KEY, X)
    kernel = nn.unbox(ours)["params"]["Dense_0"]["kernel"]
    assert kernel.sharding.is_equivalent_to(NamedSharding(mesh, P("data", "model")), 2)


class CommittedBlock(nn.Module):
    @nn.compact
    def __call__(self, x, _):
        return nn.Dense(8, kernel_init=jinit.glorot_uniform(), bias_init=jinit.normal(0.1))(x), None


class Committed(nn.Module):
    """An unrolled layer and a scanned stack, jinit's initializers and Flax's own (LayerNorm's)."""

    @nn.compact
    def __call__(self, x):
        x = nn.Dense(8, kernel_init=jinit.normal(0.02), bias_init=jinit.zeros)(x)
        stack = nn.scan(CommittedBlock, variable_axes={"params": 0}, split_rngs={"params": True}, length=3)
        x, _ = stack()(x, None)
        return nn.LayerNorm()(x)


def placement(tree):
    return [(bool(x.committed), tuple(sorted(d.id for d in x.devices()))) for x in jax.tree.leaves(tree)]


def committed_haiku(x):
    """An unrolled layer and a layer stack, with jinit's zeros and ones."""
    x = hk.Linear(8, w_init=jinit.haiku.to_haiku(jinit.he_uniform()), b_init=jinit.haiku.to_haiku(jinit.zeros))(x)
    return hk.layer_stack(3)(committed_block)(x)


def committed_block(x):
    w_init, b_init = jinit.haiku.to_haiku(jinit.glorot_uniform()), jinit.haiku.to_haiku(jinit.ones)
    return hk.Linear(8, w_init=w_init, b_init=b_init)(x)


class CommittedNNX(nnx.Module):
    def __init__(self, rngs):
        self.a = nnx.Linear(8, 8, kernel_init=jinit.he_uniform(), bias_init=jinit.zeros, rngs=rngs)


def committed(framework, key, x):
    """The framework's own initialization of a small model and jinit's, from `key`."""
    if framework in ("linen", "linen-unrolled"):
        module = Committed() if framework == "linen" else nn.Dense(8, kernel_init=jinit.he_uniform())
        return module.init(key, x), jinit.flax.initializer(module)(key, x)
    if framework == "haiku":
        f = hk.transform(committed_haiku)
        return f.init(key, x), jinit.haiku.initializer(f)(key, x)
    build = lambda k: CommittedNNX(nnx.Rngs(k))  # noqa: E731
    return nnx.state(build(key)), nnx.state(jinit.flax.builder(build)(key))


@pytest.mark.parametrize("framework", ["linen", "linen-unrolled", "haiku", "nnx"])
def test_a_key_committed_to_a_device_gives_parameters_where_the_frameworks_own_do(framework):
    """A key committed to one device of several: each parameter is where the framework's own init puts it
    (committed to that device where JAX's evaluation commits it; jinit's zeros and ones, called eagerly,
    uncommitted on the default device), with its values."""
    key = jax.device_put(jax.random.key(7), jax.devices()[5])
    theirs, ours = committed(framework, key, np.ones((2, 8), np.float32))
    assert placement(ours) == placement(theirs)
    assert (True, (5,)) in placement(theirs)
    assert jax.tree.all(jax.tree.map(lambda a, b: np.asarray(a).tobytes() == np.asarray(b).tobytes(), ours, theirs))


class NNXPartitioned(nnx.Module):
    def __init__(self, rngs):
        self.a = nnx.Linear(
            8,
            16,
            kernel_init=nnx.with_partitioning(jinit.he_normal(), ("data", "model")),
            bias_init=nnx.with_partitioning(jinit.zeros, ("model",)),
            rngs=rngs,
        )
        self.b = nnx.Linear(16, 8, kernel_init=jinit.glorot_uniform(), rngs=rngs)


@pytest.mark.parametrize("shape, names", MESHES)
def test_nnx_variables_are_created_with_their_sharding_and_eager_values(shape, names):
    mesh = mesh_of(shape, names)
    ours = jinit.flax.build(lambda: NNXPartitioned(nnx.Rngs(0)), mesh=mesh)
    with jax.set_mesh(mesh):  # Flax needs a mesh to build a partitioned variable eagerly
        reference = NNXPartitioned(nnx.Rngs(0))
    for name in ("a", "b"):
        for param in ("kernel", "bias"):
            np.testing.assert_array_equal(getattr(getattr(ours, name), param)[...],
                                          getattr(getattr(reference, name), param)[...])  # fmt: skip
    kernel = ours.a.kernel[...]
    assert kernel.sharding.is_equivalent_to(NamedSharding(mesh, P("data", "model")), 2)
    assert ours.b.kernel[...].sharding.is_equivalent_to(NamedSharding(mesh, P()), 2)


def test_haiku_parameters_are_replicated_over_the_mesh_with_their_values():
    mesh = mesh_of((2, 4), ("data", "model"))
    f = hk.transform(lambda x: hk.Linear(8, w_init=jinit.haiku.to_haiku(jinit.he_uniform()))(x))
    ours = jinit.haiku.init(f, KEY, X, mesh=mesh)
    reference = f.init(KEY, X)
    np.testing.assert_array_equal(ours["linear"]["w"], reference["linear"]["w"])
    assert ours["linear"]["w"].sharding.is_equivalent_to(NamedSharding(mesh, P()), 2)


# ------------------------------------------------------------------------------- meshes of explicit and auto axes


AXES = {"default": None, "explicit": AxisType.Explicit, "auto": AxisType.Auto}


def typed_mesh(shape, names, axis_type):
    """A mesh whose axes are all of `axis_type`; None: `jax.make_mesh`'s default (explicit since jax 0.7)."""
    if axis_type is None:
        return jax.make_mesh(shape, names)
    return jax.make_mesh(shape, names, axis_types=(axis_type,) * len(names))


class Layer(nn.Module):
    @nn.compact
    def __call__(self, x, _):
        return nn.Dense(8, kernel_init=nn.with_partitioning(jinit.glorot_uniform(), (None, "x")))(x), None


class TwoWay(nn.Module):
    """Kernels split over "x" along either axis, a stacked one, batch norm and Flax's own (replicated) biases."""

    @nn.compact
    def __call__(self, x):
        x = nn.Dense(8, kernel_init=nn.with_partitioning(jinit.glorot_uniform(), (None, "x")))(x)
        x = nn.BatchNorm(use_running_average=False)(x)
        stack = nn.scan(
            Layer, variable_axes={"params": 0}, split_rngs={"params": True}, length=2,
            metadata_params={nn.PARTITION_NAME: None},
        )  # fmt: skip
        x, _ = stack(name="stack")(x, None)
        return nn.Dense(4, kernel_init=nn.with_partitioning(jinit.he_normal(), ("x", None)))(x)


def spec_of(leaf):
    return P(*leaf.names) if isinstance(leaf, nn.Partitioned) else P()


@pytest.mark.parametrize("axes", AXES.values(), ids=AXES.keys())
def test_linen_on_a_mesh_of_any_axis_type(axes):
    mesh = typed_mesh((2,), ("x",), axes)
    boxed = jinit.flax.init(TwoWay(), KEY, X, mesh=mesh)
    reference = nn.unbox(TwoWay().init(KEY, X))
    ours = nn.unbox(boxed)
    assert jax.tree.all(jax.tree.map(lambda a, b: bool(np.array_equal(a, b)), ours, reference))
    specs = jax.tree.map(spec_of, boxed, is_leaf=lambda x: isinstance(x, nn.Partitioned))
    assert specs["params"]["stack"]["Dense_0"]["kernel"] == P(None, None, "x")
    for array, spec in zip(jax.tree.leaves(ours), jax.tree.leaves(specs), strict=True):
        assert array.sharding.is_equivalent_to(NamedSharding(mesh, spec), array.ndim), (spec, array.sharding)


@pytest.mark.parametrize("axes", AXES.values(), ids=AXES.keys())
def test_nnx_on_a_mesh_of_any_axis_type(axes):
    mesh = typed_mesh((2, 4), ("data", "model"), axes)
    ours = jinit.flax.build(lambda: NNXPartitioned(nnx.Rngs(0)), mesh=mesh)
    with jax.set_mesh(mesh):  # Flax needs a mesh to build a partitioned variable eagerly
        reference = NNXPartitioned(nnx.Rngs(0))
    # the values (on a mesh, the metadata's `eager_sharding` is False: see `jinit.flax.build`)
    values, expected = nnx.to_pure_dict(nnx.state(ours)), nnx.to_pure_dict(nnx.state(reference))
    assert jax.tree.all(jax.tree.map(lambda a, b: bool(np.array_equal(a, b)), values, expected))
    assert ours.a.kernel[...].sharding.is_equivalent_to(NamedSharding(mesh, P("data", "model")), 2)
    assert ours.a.bias[...].sharding.is_equivalent_to(NamedSharding(mesh, P("model")), 1)
    assert ours.b.kernel[...].sharding.is_equivalent_to(NamedSharding(mesh, P()), 2)


def normed(x):
    h = hk.Linear(8, w_init=jinit.haiku.to_haiku(jinit.glorot_uniform()))(x)
    return hk.BatchNorm(create_scale=True, create_offset=True, decay_rate=0.9)(h, is_training=True)


@pytest.mark.parametrize("axes", AXES.values(), ids=AXES.keys())
def test_haiku_on_a_mesh_of_any_axis_type(axes):
    """Replicated, with Haiku's values: keys and constants only (one compiled program), and the state that batch
    norm computes from the inputs (evaluated eagerly)."""
    mesh = typed_mesh((2,), ("x",), axes)
    x = jax.random.normal(jax.random.key(1), (4, 8))
    for f in (hk.transform(lambda x: hk.Linear(8, w_init=jinit.haiku.to_haiku(jinit.he_uniform()))(x)),
              hk.transform_with_state(normed)):  # fmt: skip
        ours = jinit.haiku.init(f, KEY, x, mesh=mesh)
        assert jax.tree.all(jax.tree.map(lambda a, b: bool(np.array_equal(a, b)), ours, f.init(KEY, x)))
        for array in jax.tree.leaves(ours):
            assert array.sharding.is_equivalent_to(NamedSharding(mesh, P()), array.ndim)
