"""Stacked layers drawn by the engine: `nn.scan`, `nn.vmap`, `nnx.vmap`, `nnx.scan`, `hk.layer_stack` and
`eqx.filter_vmap`, nested and under `nn.remat`, against each framework's own initialization; every PRNG
implementation JAX ships; compilation flat in depth; reusable plans."""

import pytest

pytest.importorskip("flax", reason="flax is an optional extra: pip install -e '.[flax]'")
pytest.importorskip("haiku", reason="haiku is an optional extra: pip install -e '.[haiku]'")
eqx = pytest.importorskip("equinox", reason="equinox is an optional extra: pip install -e '.[equinox]'")

import flax.linen as nn  # noqa: E402
import haiku as hk  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from compiling import compiled  # noqa: E402
from flax import nnx  # noqa: E402

import jinit  # noqa: E402
import jinit.equinox  # noqa: E402
import jinit.flax  # noqa: E402
import jinit.haiku  # noqa: E402
from jinit._src import plan, program, rows  # noqa: E402
from jinit.haiku import to_haiku  # noqa: E402

KEY = jax.random.key(0)
X = jnp.linspace(-1, 1, 16).reshape(2, 8)
STD, RES = jinit.normal(0.02), jinit.truncated_normal(0.5, lower=-3.0)


def same(a, b):
    """Same structure (boxes and metadata included), dtypes and bits."""
    return jax.tree.structure(a) == jax.tree.structure(b) and jax.tree.all(
        jax.tree.map(lambda x, y: x.dtype == y.dtype and np.asarray(x).tobytes() == np.asarray(y).tobytes(), a, b)
    )


def n_leaves(tree):
    return len(jax.tree.leaves(tree))


# ---------------------------------------------------------------------------------------------------- linen


class Block(nn.Module):
    """Every initializer jinit's: a layer norm, an attention block (DenseGeneral reshapes) and an MLP."""

    @nn.compact
    def __call__(self, x, _=None):
        h = nn.LayerNorm(scale_init=jinit.ones, bias_init=jinit.zeros)(x)
        h = nn.MultiHeadDotProductAttention(
            num_heads=2, kernel_init=jinit.glorot_uniform(), bias_init=jinit.zeros, deterministic=True
        )(h[:, None, :])[:, 0]
        h = nn.Dense(16, kernel_init=STD, bias_init=jinit.zeros)(x + h)
        return x + nn.Dense(8, kernel_init=RES, bias_init=jinit.constant(0.1))(nn.gelu(h)), None


def scanned(block=Block, length=3, axis=0, split=True, **kwargs):
    return nn.scan(block, variable_axes={"params": axis}, split_rngs={"params": split}, length=length, **kwargs)


class Inner(nn.Module):
    @nn.compact
    def __call__(self, x, _=None):
        x, _ = scanned(length=2)(name="inner")(x, None)
        return x, None


LINEN = {
    "scan": lambda: scanned()(),
    "scan axis 1": lambda: scanned(axis=1)(),
    "scan shared keys": lambda: scanned(split=False)(),
    "scan of remat": lambda: scanned(nn.remat(Block))(),
    "nested scan": lambda: scanned(Inner, length=3)(),
    "vmap": lambda: nn.vmap(
        Block, variable_axes={"params": 0}, split_rngs={"params": True}, in_axes=(0, None), axis_size=3
    )(),
    "scan partitioned": lambda: scanned(metadata_params={nn.PARTITION_NAME: "layers"})(),
}


@pytest.mark.parametrize("name", LINEN)
def test_linen_stacks_are_drawn_by_the_engine_bitwise(name):
    module = LINEN[name]()
    x = jnp.stack([X] * 3) if name == "vmap" else X
    init = jinit.flax.initializer(module)
    ours, theirs = init(KEY, x, None), module.init(KEY, x, None)
    assert same(ours, theirs)
    assert sorted(init.drawn(KEY, x, None)) == sorted(  # every leaf, since every initializer is jinit's
        jax.tree_util.keystr(p, simple=True, separator="/")
        for p, _ in jax.tree_util.tree_leaves_with_path(theirs, is_leaf=lambda v: isinstance(v, nn.Partitioned))
    )
    assert same(jax.jit(init)(KEY, x, None), theirs)


def test_linen_scan_with_path_keys_folds_the_layer_index():
    module = scanned()()
    ours = jinit.flax.init(module, KEY, X, None, path_keys=True)
    kernel = ours["params"]["Dense_0"]["kernel"]  # (3, 8, 16): layer i from path_key folded with i
    root = jinit.path_key(KEY, "params/Dense_0/kernel")
    for i in range(3):
        np.testing.assert_array_equal(kernel[i], STD(jax.random.fold_in(root, i), (8, 16)))


def test_a_stacked_models_top_parameters_share_its_kernel():
    class Model(nn.Module):
        @nn.compact
        def __call__(self, x):
            x = nn.Dense(8, kernel_init=jinit.he_normal(), bias_init=jinit.zeros)(x)
            return scanned()(name="stack")(x, None)[0]

    module = Model()
    init = jinit.flax.initializer(module)
    found = init.planned.plan((KEY, X), {})
    assert found.top == [] and len(found.others) == n_leaves(module.init(KEY, X)) <= plan.TOP_IN_KERNEL + 12
    assert same(init(KEY, X), module.init(KEY, X))
    ours = jinit.flax.init(module, KEY, X, path_keys=True)  # an unstacked leaf's key is its path key, unfolded
    expected = jinit.he_normal()(jinit.path_key(KEY, "params/Dense_0/kernel"), (8, 8))
    np.testing.assert_array_equal(ours["params"]["Dense_0"]["kernel"], expected)


def test_a_reshaped_unstacked_parameter_gets_its_path_key():
    """DenseGeneral draws its kernel flat and reshapes it: its key is still its path key, unfolded."""
    module = nn.DenseGeneral((2, 4), kernel_init=jinit.lecun_normal(), bias_init=jinit.zeros)
    ours = jinit.flax.init(module, KEY, X, path_keys=True)["params"]["kernel"]
    expected = jinit.lecun_normal()(jinit.path_key(KEY, "params/kernel"), (8, 8)).reshape(8, 2, 4)
    np.testing.assert_array_equal(ours, expected)


# ------------------------------------------------------------------------------------------------------ NNX


class NNXBlock(nnx.Module):
    def __init__(self, rngs):
        self.norm = nnx.LayerNorm(8, scale_init=jinit.ones, bias_init=jinit.zeros, rngs=rngs)
        self.attention = nnx.MultiHeadAttention(
            2, 8, kernel_init=jinit.glorot_uniform(), bias_init=jinit.zeros, decode=False, rngs=rngs
        )
        self.mlp = nnx.Linear(8, 16, kernel_init=STD, bias_init=jinit.zeros, rngs=rngs)
        self.out = nnx.Linear(16, 8, kernel_init=RES, bias_init=jinit.constant(0.1), rngs=rngs)


def nnx_vmap(key):
    @nnx.split_rngs(splits=4)
    @nnx.vmap(in_axes=(0,), out_axes=0)
    def stack(rngs):
        return NNXBlock(rngs)

    return stack(nnx.Rngs(key))


def nnx_scan(key):
    @nnx.split_rngs(splits=4)
    @nnx.scan(in_axes=(nnx.Carry, 0), out_axes=(nnx.Carry, 0), length=4)
    def stack(carry, rngs):
        return carry, NNXBlock(rngs)

    return stack(0, nnx.Rngs(key))[1]


@pytest.mark.parametrize("make", [nnx_vmap, nnx_scan], ids=["vmap", "scan"])
def test_nnx_stacks_are_drawn_by_the_engine_bitwise(make):
    build = jinit.flax.builder(make)
    ours, theirs = nnx.state(build(KEY)), nnx.state(make(KEY))
    assert same(ours, theirs)
    assert len(build.drawn(KEY)) == n_leaves(theirs)
    assert same(nnx.state(build(jax.random.key(5))), nnx.state(make(jax.random.key(5))))  # reused


# ---------------------------------------------------------------------------------------------------- Haiku


def haiku_stack(x):
    @hk.experimental.layer_stack(3)
    def layer(x):
        h = hk.LayerNorm(-1, True, True, scale_init=to_haiku(jinit.ones), offset_init=to_haiku(jinit.zeros))(x)
        h = hk.Linear(16, w_init=to_haiku(STD), b_init=to_haiku(jinit.zeros))(h)
        return x + hk.Linear(8, w_init=to_haiku(RES), b_init=to_haiku(jinit.constant(0.1)))(jax.nn.gelu(h))

    return layer(x)


def test_haiku_layer_stack_is_drawn_by_the_engine_bitwise():
    f = hk.transform(haiku_stack)
    init = jinit.haiku.initializer(f)
    ours, theirs = init(KEY, X), f.init(KEY, X)
    assert same(ours, theirs) and len(init.drawn(KEY, X)) == n_leaves(theirs)


# -------------------------------------------------------------------------------------------------- Equinox


class Linear(eqx.Module):
    weight: jax.Array
    bias: jax.Array

    def __init__(self, n_in, n_out, key):
        self.weight = jinit.he_normal()(key, (n_in, n_out))
        self.bias = jinit.zeros(None, (n_out,))


class EqxModel(eqx.Module):
    first: Linear
    stack: Linear
    own: eqx.nn.Linear  # Equinox's own uniform initialization: JAX's draw, found in the program (`jax_draws`)

    def __init__(self, key):
        k1, k2, k3 = jax.random.split(key, 3)
        self.first = Linear(4, 8, k1)
        self.stack = eqx.filter_vmap(lambda k: Linear(8, 8, k))(jax.random.split(k2, 5))
        self.own = eqx.nn.Linear(8, 2, key=k3)


def test_equinox_build_is_bitwise_the_constructor():
    build = jinit.equinox.builder(EqxModel)
    ours, theirs = build(KEY), EqxModel(KEY)
    assert same(eqx.filter(ours, eqx.is_array), eqx.filter(theirs, eqx.is_array))
    drawn = ["first/bias", "first/weight", "own/bias", "own/weight", "stack/bias", "stack/weight"]
    assert sorted(build.drawn(KEY)) == drawn
    assert ours.stack.weight.shape == (5, 8, 8)
    again, expected = build(jax.random.key(3)), EqxModel(jax.random.key(3))
    assert same(eqx.filter(again, eqx.is_array), eqx.filter(expected, eqx.is_array))
    with pytest.raises(TypeError, match=r"`shardings\[0\]`.*shardings\[0\]='model'"):
        jinit.equinox.build(EqxModel, KEY, shardings=[("first/.*", "model")])
    with pytest.raises(TypeError, match=r"eqx\.Module"):
        jinit.equinox.build(lambda k: 3, KEY)

    with pytest.raises(TypeError, match=r"eqx\.Module.*constructor\(\)=\(3, 4\)"):
        jinit.equinox.build(lambda k: (3, 4), KEY)


class Normalized(eqx.Module):
    linear: Linear
    norm: eqx.nn.BatchNorm  # state: running statistics, kept apart by `eqx.nn.make_with_state`

    def __init__(self, key):
        self.linear = Linear(4, 8, key)
        self.norm = eqx.nn.BatchNorm(8, "batch", mode="batch")


def test_equinox_build_of_a_model_and_its_state():
    """``eqx.nn.make_with_state``'s constructor returns the model and its state: both are built, bitwise."""
    make = eqx.nn.make_with_state(Normalized)
    build = jinit.equinox.builder(make)
    (model, state), (their_model, their_state) = build(KEY), make(KEY)
    assert isinstance(state, eqx.nn.State) and isinstance(model, Normalized)
    assert same(eqx.filter((model, state), eqx.is_array), eqx.filter((their_model, their_state), eqx.is_array))
    assert {"0/linear/weight", "0/linear/bias"} <= set(build.drawn(KEY))
    x = jnp.linspace(-1, 1, 12).reshape(3, 4)
    forward = jax.vmap(
        lambda m, s, x: m.norm(x @ m.linear.weight + m.linear.bias, s), (None, None, 0), (0, None), axis_name="batch"
    )
    assert same(forward(model, state, x), forward(their_model, their_state, x))


# ------------------------------------------------------------------------------------------ PRNG implementations

IMPLS = ["threefry2x32", "rbg", "unsafe_rbg", "philox2x32", "philox4x32", "threefry4x32"]


@pytest.mark.parametrize("partitionable", [True, False], ids=["partitionable", "not partitionable"])
@pytest.mark.parametrize("impl", IMPLS)
def test_every_prng_implementation(impl, partitionable, key_of):
    """A scanned linen model and a vmapped NNX one under each implementation: the framework's values (for rbg and
    unsafe_rbg, whose vmap is not their per-key draw, the scan's layers are drawn one by one)."""
    if not partitionable and impl != "threefry2x32":
        pytest.skip("jax_threefry_partitionable changes threefry2x32 only")
    key = key_of(3, impl)
    with jax.threefry_partitionable(partitionable):
        module = scanned()()
        assert same(jinit.flax.init(module, key, X, None), module.init(key, X, None))
        assert same(nnx.state(jinit.flax.build(nnx_vmap, key)), nnx.state(nnx_vmap(key)))
        f = hk.transform(haiku_stack)
        assert same(jinit.haiku.init(f, key, X), f.init(key, X))


def test_every_registered_implementation_is_tested():
    from jax._src.random import prng  # the registry of implementations: a new one must be added above

    # jinit's own (its positioned stream) and Pallas's kernel-only ones (registered when Pallas is imported)
    internal = {"jinit_positioned_threefry2x32", "_pallas_internal_stateful", "pallas_tpu"}
    assert set(prng.prngs) - internal <= set(IMPLS)


# --------------------------------------------------------------------------------------- compilation, reuse


def _compiles(fn):
    with compiled() as names:
        jax.block_until_ready(fn())
    return len(names)


def test_compilation_does_not_grow_with_the_number_of_stacked_layers():
    counts = []
    for length in (4, 16):
        module = scanned(length=length)()
        jinit.flax.init(module, KEY, X, None)  # a first model of this depth: every kernel of this depth compiled
        other = scanned(length=length)()
        counts.append(_compiles(lambda m=other: jinit.flax.initializer(m)(jax.random.key(1), X, None)))
    assert counts[0] == counts[1], counts


def test_a_plan_is_reused_and_replanned_only_for_new_shapes(monkeypatch):
    monkeypatch.setattr(plan, "MAX_PLANS", 3)  # (each new shape is traced and compiled: a few are enough)
    module = scanned()()
    init = jinit.flax.initializer(module)
    first = init(KEY, X, None)
    assert _compiles(lambda: init(jax.random.key(1), X, None)) == 0  # another key: nothing traced or compiled
    assert same(init(jax.random.key(1), X, None), module.init(jax.random.key(1), X, None))
    assert len(init.planned.plans) == 1
    wide = jnp.ones((5, 8))
    assert same(init(KEY, wide, None), module.init(KEY, wide, None)) and len(init.planned.plans) == 2
    jax.clear_caches()
    assert same(init(KEY, X, None), first)
    for i in range(plan.MAX_PLANS + 2):  # bounded: the oldest plan goes first
        init(KEY, jnp.ones((i + 1, 8)), None)
    assert len(init.planned.plans) == plan.MAX_PLANS


def test_vmap_over_keys_draws_an_ensemble():
    module = scanned()()
    init = jinit.flax.initializer(module)
    keys = jax.random.split(KEY, 3)
    ensemble = jax.vmap(init, in_axes=(0, None, None))(keys, X, None)
    for i in range(3):
        assert same(jax.tree.map(lambda v, i=i: v[i], ensemble), module.init(keys[i], X, None))


class OrthogonalBlock(nn.Module):
    @nn.compact
    def __call__(self, x, _=None):
        h = nn.Dense(16, kernel_init=jinit.orthogonal(), use_bias=False)(x)
        return nn.Dense(8, kernel_init=jinit.scaled(jinit.orthogonal(), 2.0), use_bias=False)(h), None


class OrthogonalModel(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = nn.Dense(8, kernel_init=jinit.orthogonal(), bias_init=jinit.normal(0.1))(x)
        return scanned(OrthogonalBlock)()(x, None)[0]


def test_a_program_holds_at_most_one_lapack_draw(monkeypatch):
    """jaxlib 0.10.2's CPU runtime hung, every thread waiting, in about 1 of 300 runs of one program drawing two
    stacked orthogonal kernels (two LAPACK QRs), and in none of thousands with one: each program the plan runs
    eagerly holds at most one such draw (`plan._programs`), here the top kernel's and each stacked one's."""
    programs = []
    real = plan._kernel

    def spy(keys, *, plan, which):
        hlo = real.plain.lower(keys, plan=plan, which=which).compile().as_text()
        programs.append(hlo.count('custom_call_target="lapack_sgeqrf_ffi"'))
        return real(keys, plan=plan, which=which)

    monkeypatch.setattr(plan, "_kernel", spy)
    module = OrthogonalModel()
    assert same(jinit.flax.init(module, KEY, X), module.init(KEY, X))
    assert sorted(programs) == [1, 1, 1], programs


# ------------------------------------------------------------------------------ by the rows or the kernel


class RowBlock(nn.Module):
    """Every parameter rowable: dimensions of 64, jinit's random families, zeros and ones."""

    @nn.compact
    def __call__(self, x, _=None):
        h = nn.LayerNorm(scale_init=jinit.ones, bias_init=jinit.zeros)(x)
        h = nn.DenseGeneral((2, 32), kernel_init=jinit.glorot_uniform(), bias_init=jinit.normal(1e-3))(h)
        h = nn.Dense(64, kernel_init=jinit.truncated_normal(0.02), bias_init=jinit.zeros)(h.reshape(*h.shape[:-2], 64))
        return x + h, None


class RowModel(nn.Module):
    bias: nn.initializers.Initializer = jinit.zeros

    @nn.compact
    def __call__(self, x):
        x = nn.Dense(64, kernel_init=jinit.lecun_normal(), bias_init=self.bias)(x)
        x, _ = nn.scan(RowBlock, variable_axes={"params": 0}, split_rngs={"params": True}, length=3)()(x, None)
        return x


X64 = jnp.ones((2, 64))


@pytest.fixture
def spied(monkeypatch):
    """The calls of the rows and of the plan's kernel: how many leaves each drew."""
    counts = {"rows": 0, "kernel": 0}
    draw, kernel = rows.draw, plan._kernel

    def spy_rows(requests):
        counts["rows"] += len(requests)
        return draw(requests)

    class SpyKernel:
        def __call__(self, keys, *, plan, which):
            counts["kernel"] += len(which)
            return kernel(keys, plan=plan, which=which)

    monkeypatch.setattr(rows, "draw", spy_rows)
    monkeypatch.setattr(plan, "_kernel", SpyKernel())
    return counts


def test_a_scanned_model_is_drawn_by_the_rows_without_its_kernel(spied):
    model, key = RowModel(), jax.random.key(5)
    ours = jinit.flax.initializer(model)(key, X64)
    assert same(ours, model.init(key, X64))
    # the four random ones by the rows (lecun_normal; in the stack glorot_uniform, normal, truncated_normal), the
    # zeros and ones on the host, nothing by the plan's kernel
    assert spied == {"rows": 4, "kernel": 0}


def test_a_site_the_rows_cannot_draw_goes_to_the_kernel(spied):
    model, key = RowModel(bias=jinit.constant(0.5)), jax.random.key(6)  # a constant: no law
    assert same(jinit.flax.initializer(model)(key, X64), model.init(key, X64))
    assert spied == {"rows": 4, "kernel": 1}


def test_under_a_trace_the_kernel_draws_everything(spied):
    model, key = RowModel(), jax.random.key(7)
    init = jinit.flax.initializer(model)
    assert same(jax.jit(init)(key, X64), model.init(key, X64))
    assert spied["rows"] == 0 and spied["kernel"] > 0


def test_other_prng_implementations_go_to_the_kernel(spied):
    model, key = RowModel(), jax.random.key(8, impl="rbg")
    assert same(jinit.flax.initializer(model)(key, X64), model.init(key, X64))
    assert spied["rows"] == 0 and spied["kernel"] > 0


class Unrolled(nn.Module):
    @nn.compact
    def __call__(self, x):
        for _ in range(3):
            x = nn.Dense(64, kernel_init=jinit.normal(0.02), bias_init=jinit.zeros)(x)
        return nn.Dense(64, kernel_init=jinit.orthogonal(), bias_init=jinit.ones)(x)


def test_an_unrolled_models_parameters_are_drawn_by_the_rows_too(spied, monkeypatch):
    model, key = Unrolled(), jax.random.key(9)
    by_tree, draw = [], plan.tree.draw

    def spy_tree(leaves, keys, **kwargs):
        by_tree.extend(leaves)
        return draw(leaves, keys, **kwargs)

    monkeypatch.setattr(plan.tree, "draw", spy_tree)
    reports = []
    ours = jinit.flax.initializer(model)(key, X64, progress=reports.append)
    assert same(ours, model.init(key, X64))
    assert spied["rows"] == 3 and [leaf.path for leaf in by_tree] == ["params/Dense_3/kernel"]  # (no law)
    assert sorted(r.path for r in reports) == sorted(  # every parameter reported once, the last with the total
        jax.tree_util.keystr(p, simple=True, separator="/") for p, _ in jax.tree_util.tree_leaves_with_path(ours)
    )
    assert reports[-1].leaves == reports[-1].total_leaves == 8


# ------------------------------------------------------------------------------------------------ stand-ins


@pytest.fixture
def traces(monkeypatch):
    """Each trace of a model, as whether its draws were stand-ins."""
    seen, trace = [], program.trace

    def spy(*args, stand_ins=True, **kwargs):
        seen.append(stand_ins)
        return trace(*args, stand_ins=stand_ins, **kwargs)

    monkeypatch.setattr(program, "trace", spy)
    return seen


def test_the_trace_stands_in_for_the_draws_the_engine_makes(traces):
    """One trace, whose draws are stand-ins, none of them left in the plan's program: the engine drew them all."""
    module, f = scanned(nn.remat(Block))(), hk.transform(haiku_stack)
    linen, haiku, build = jinit.flax.initializer(module), jinit.haiku.initializer(f), jinit.flax.builder(nnx_vmap)
    assert same(linen(KEY, X, None), module.init(KEY, X, None))
    assert same(haiku(KEY, X), f.init(KEY, X))
    assert same(nnx.state(build(KEY)), nnx.state(nnx_vmap(KEY)))
    assert traces == [True, True, True]
    for planned in (linen.planned, haiku.planned, build.planned):
        (traced,) = planned.plans.values()
        assert program.needs_draws(traced.program.closed.jaxpr) and not program.needs_draws(traced.found.jaxpr)


class Derived(nn.Module):
    """A value computed from a jinit parameter's draw (a sum of squares kept as state), in a scan and at top
    level: the program computes the parameter and the value as the framework does, the value bitwise too."""

    @nn.compact
    def __call__(self, x, _=None):
        kernel = self.param("kernel", jinit.glorot_uniform(), (8, 8))
        self.variable("stats", "norm", lambda: jnp.sum(kernel**2))
        return x @ kernel, None


def derived_scan():
    return nn.scan(Derived, variable_axes={"params": 0, "stats": 0}, split_rngs={"params": True}, length=3)()


@pytest.mark.parametrize("make", [Derived, derived_scan], ids=["top", "scan"])
def test_a_value_computed_from_a_draw_is_traced_again_with_the_draws(traces, make):
    module = make()
    assert same(jinit.flax.init(module, KEY, X, None), module.init(KEY, X, None))
    assert traces == [True, False]


# ------------------------------------------------------------------------------- what the program is left with


class Defaults(nn.Module):
    """Flax's own initializers beside jinit's in a scanned block: JAX's normal in the body, which
    `jinit._src.jax_draws` leaves to the program, and the layer norm's constants, stacked by the scan."""

    @nn.compact
    def __call__(self, x, _=None):
        h = nn.LayerNorm()(x)
        return x + nn.Dense(13, kernel_init=jinit.glorot_uniform(), bias_init=nn.initializers.normal(0.5))(h), None


class DefaultsModel(nn.Module):
    @nn.compact
    def __call__(self, x):
        x, _ = nn.scan(Defaults, variable_axes={"params": 0}, split_rngs={"params": True}, length=7)()(x, None)
        return nn.Dense(11, kernel_init=jinit.he_normal(), bias_init=nn.initializers.zeros)(x)


def test_the_program_compiles_only_what_the_engine_leaves_it(monkeypatch):
    """The framework's own parameters left to the program are computed without compiling what the host computes:
    the scan's layers' keys come from the host with the sites' keys (no split compiled), its body no longer
    computes the sites' keys, and constants are filled in NumPy (no broadcast compiled); bitwise, eagerly too."""
    bodies = []
    real = program._bind_each

    def spy(jaxpr, consts, args):
        bodies.extend(e.params["jaxpr"].jaxpr for e in jaxpr.eqns if e.primitive.name == "scan")
        return real(jaxpr, consts, args)

    monkeypatch.setattr(program, "_bind_each", spy)
    module, x = DefaultsModel(), jnp.linspace(-1, 1, 26).reshape(2, 13)  # (shapes no other test compiles)
    with compiled() as names:
        ours = jinit.flax.init(module, KEY, x)
    assert same(ours, module.init(KEY, x))
    assert len(bodies) == 1 and not any(map(program._typed_key, bodies[0].outvars))  # no site's key
    # the bias's draw and the layer norm's two constants, stacked, and nothing else
    assert [v.aval.shape for v in bodies[0].outvars] == [(13,), (13,), (13,)]
    assert not {"jit(_threefry_split)", "jit(random_split)", "jit(broadcast_in_dim)"} & set(names), names


class Constants(nn.Module):
    """jinit's kernel beside Flax's own constants (a layer norm's scale and bias, a zeros bias): with the key
    computed on the host, all that the program is left with is fills."""

    @nn.compact
    def __call__(self, x):
        return nn.Dense(9, kernel_init=jinit.he_normal(), bias_init=nn.initializers.zeros)(nn.LayerNorm()(x))


@pytest.mark.parametrize("make", [Constants, DefaultsModel], ids=["fills", "scan"])
def test_fills_alone_are_evaluated_without_the_check_that_compiles(monkeypatch, make):
    """Where all the program is left with is fills made in NumPy, only the check of fills (which compiles nothing)
    is made, not the one of eager evaluation, whose own compilations would be a first call's only ones but the
    draws'; where anything else is left (a scan), that check is made. Bitwise either way."""
    made = []
    monkeypatch.setattr(program, "evaluation_works", lambda: made.append("evaluation") or True)
    real = program.filling_works
    monkeypatch.setattr(program, "filling_works", lambda: made.append("filling") or real())
    module, x = make(), jnp.linspace(-1, 1, 26).reshape(2, 13)
    assert same(jinit.flax.init(module, KEY, x), module.init(KEY, x))
    assert ("evaluation" in made) == (make is DefaultsModel), made
    assert "filling" in made or make is DefaultsModel, made


def test_the_check_of_fills_compiles_nothing():
    program.filling_works.cache_clear()
    with compiled() as names:
        assert program.filling_works()
    assert names == []
