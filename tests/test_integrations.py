"""Whole-model initialization of unchanged Flax linen, Flax NNX and Haiku models by jinit's engine
(`jinit.flax.init`, `jinit.flax.build`, `jinit.haiku.init`), against the frameworks' own initialization."""

import functools
import gc
import io
import weakref

import pytest

pytest.importorskip("flax", reason="flax is an optional extra: pip install -e '.[flax]'")
pytest.importorskip("haiku", reason="haiku is an optional extra: pip install -e '.[haiku]'")

import flax.linen as nn
import haiku as hk
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

import jinit
import jinit.flax
import jinit.haiku
from jinit._src import program
from jinit.haiku import to_haiku

KEY = jax.random.key(0)


def same(a, b):
    """Same structure (boxes and their metadata included), dtypes and bitwise values."""
    return jax.tree.structure(a) == jax.tree.structure(b) and jax.tree.all(
        jax.tree.map(lambda x, y: x.dtype == y.dtype and bool(np.array_equal(x, y)), a, b)
    )


# ----------------------------------------------------------------------------------------------------- linen


class Block(nn.Module):
    width: int = 16

    @nn.compact
    def __call__(self, x, _=None):
        h = nn.LayerNorm(scale_init=jinit.ones, bias_init=jinit.zeros)(x)
        h = nn.MultiHeadDotProductAttention(
            num_heads=2, kernel_init=jinit.glorot_uniform(), bias_init=jinit.zeros, deterministic=True
        )(h)
        x = x + h
        h = nn.Dense(2 * self.width, kernel_init=jinit.normal(0.02), bias_init=jinit.zeros)(x)
        return x + nn.Dense(self.width, kernel_init=jinit.truncated_normal(0.01))(nn.gelu(h)), None


class Mixed(nn.Module):
    """Embedding, convolution, batch norm, attention blocks, scanned blocks, a partitioned kernel and Flax's
    own default initializers, together."""

    blocks: int = 2

    @nn.compact
    def __call__(self, tokens, train=False):
        x = nn.Embed(50, 16, embedding_init=jinit.normal(0.02))(tokens)
        x = nn.Conv(16, (3,), kernel_init=jinit.he_normal(), bias_init=jinit.zeros)(x)
        x = nn.BatchNorm(use_running_average=not train)(x)
        for _ in range(self.blocks):
            x, _ = Block()(x)
        scanned = nn.scan(Block, variable_axes={"params": 0}, split_rngs={"params": True}, length=2)
        x, _ = scanned(name="stack")(x, None)
        x = nn.Dense(8, kernel_init=nn.with_partitioning(jinit.orthogonal(), (None, "model")))(x)
        return nn.Dense(4)(x)  # Flax's default lecun_normal and zeros


TOKENS = jnp.arange(12).reshape(2, 6) % 50


def test_linen_gives_module_init_bitwise_with_jinit_parameters_drawn_by_the_engine(drawn):
    model = Mixed()
    ours = jinit.flax.init(model, KEY, TOKENS)
    assert same(ours, model.init(KEY, TOKENS))
    assert isinstance(ours["params"]["Dense_0"]["kernel"], nn.Partitioned)
    # every jinit parameter is drawn by the engine, the scanned blocks' too, and so is the draw of Flax's default
    # lecun_normal (JAX's truncated normal times its scale: `jinit._src.jax_draws`); its zeros and the batch
    # statistics are computed by the program
    assert "params/Embed_0/embedding" in drawn and "params/Dense_0/kernel" in drawn
    assert "params/Block_1/MultiHeadDotProductAttention_0/out/bias" in drawn
    # DenseGeneral reshapes its initializer's results: drawn with the initializer's shape, then reshaped
    for projection in ("query/kernel", "query/bias", "key/kernel", "key/bias", "value/kernel", "out/kernel"):
        assert f"params/Block_1/MultiHeadDotProductAttention_0/{projection}" in drawn
    assert "params/stack/MultiHeadDotProductAttention_0/query/kernel" in drawn  # stacked by nn.scan: (2, 16, 2, 8)
    assert "params/Dense_1/kernel" in drawn and "params/Dense_1/bias" not in drawn
    assert not any("batch_stats" in path for path in drawn)
    assert len(drawn) == 1 + 2 + 3 * 13 + 1 + 1  # embedding, conv, 13 per block (scanned too), the two kernels


def test_linen_with_rng_dicts_raw_keys_and_extra_arguments():
    model = Mixed(blocks=1)
    rngs = {"params": jax.random.PRNGKey(3), "dropout": jax.random.PRNGKey(4)}
    assert same(jinit.flax.init(model, rngs, TOKENS, train=True), model.init(rngs, TOKENS, train=True))


def test_linen_under_jit_and_eval_shape():
    model = Mixed(blocks=1)
    reference = model.init(KEY, TOKENS)
    assert same(jax.jit(lambda k: jinit.flax.init(model, k, TOKENS))(KEY), reference)
    shapes = jax.eval_shape(lambda k: jinit.flax.init(model, k, TOKENS), KEY)
    assert jax.tree.map(lambda x: (x.shape, x.dtype), shapes) == jax.tree.map(lambda x: (x.shape, x.dtype), reference)


def test_linen_path_keys_are_the_parameters_paths_and_stable_when_a_layer_is_added():
    small, large = Mixed(blocks=1), Mixed(blocks=2)
    a = jinit.flax.init(small, KEY, TOKENS, path_keys=True)
    b = jinit.flax.init(large, KEY, TOKENS, path_keys=True)
    kernel = a["params"]["Embed_0"]["embedding"]
    alone = jinit.normal(0.02)(jinit.path_key(KEY, "params/Embed_0/embedding"), kernel.shape)
    np.testing.assert_array_equal(kernel, alone)
    for name in ("Embed_0", "Conv_0", "Block_0"):
        assert same(a["params"][name], b["params"][name])
    assert not np.array_equal(
        a["params"]["Embed_0"]["embedding"], small.init(KEY, TOKENS)["params"]["Embed_0"]["embedding"]
    )


def test_linen_parameter_computed_from_an_initializer_result_keeps_its_values(drawn):
    class Derived(nn.Module):
        @nn.compact
        def __call__(self, x):
            w = self.param("w", lambda k, s: jinit.he_normal()(k, s).T * 2.0, (3, 5))
            tied = self.param("tied", jinit.lecun_uniform(), (5, 3))
            return x @ w + x @ tied

    x = jnp.ones((2, 5))
    assert same(jinit.flax.init(Derived(), KEY, x), Derived().init(KEY, x))
    assert drawn == ["params/tied"]  # `w` is not what its initializer returned: computed as Flax computes it


def test_compilation_does_not_grow_with_the_number_of_layers():
    compiles = []

    def listen(event, duration, **_):
        if event == "/jax/core/compile/backend_compile_duration":
            compiles.append(event)

    jax.monitoring.register_event_duration_secs_listener(listen)

    class Deep(nn.Module):
        layers: int
        width: int

        @nn.compact
        def __call__(self, x):
            for _ in range(self.layers):
                x = nn.Dense(self.width, kernel_init=jinit.he_uniform(), bias_init=jinit.constant(0.1))(x)
            return x

    counts = []
    for layers, width in ((6, 37), (24, 41)):  # new widths: nothing compiled before
        del compiles[:]
        jinit.flax.init(Deep(layers, width), KEY, jnp.ones((1, width)))
        counts.append(len(compiles))
    assert counts[0] == counts[1], counts


def test_linen_errors_name_the_argument():
    with pytest.raises(TypeError, match=r"`module`.*flax\.linen\.Module"):
        jinit.flax.init(lambda x: x, KEY)
    with pytest.raises(ValueError, match="'params' key"):
        jinit.flax.init(Mixed(), {"dropout": KEY}, TOKENS, path_keys=True)

    class DataDependent(nn.Module):
        @nn.compact
        def __call__(self, n):
            return self.param("w", jinit.zeros, (int(n),))

    class Outer(nn.Module):
        @nn.compact
        def __call__(self, n):
            return DataDependent(name="sized")(n)

    # the module whose parameter shape needs an input's value is named, before anything is drawn
    with pytest.raises(ValueError, match=r"module `sized` \(DataDependent\) uses the value of an input") as info:
        jinit.flax.init(Outer(), KEY, jnp.array(3))
    assert isinstance(info.value.__cause__, jax.errors.ConcretizationTypeError)
    f = hk.transform(lambda n: hk.get_parameter("w", (int(n),), init=to_haiku(jinit.zeros)))
    with pytest.raises(ValueError, match="the parameters cannot be initialized by tracing: the model uses"):
        jinit.haiku.init(f, KEY, jnp.array(3))


def test_progress_reports_every_drawn_parameter():
    reports = []
    jinit.flax.init(Mixed(blocks=1), KEY, TOKENS, progress=reports.append)
    assert [r.leaves for r in reports] == list(range(1, len(reports) + 1))
    last = reports[-1]
    assert last.leaves == last.total_leaves and last.elements == last.total_elements
    assert last.nbytes == last.total_bytes == 4 * last.total_elements
    assert last.seconds >= 0 and last.remaining == 0
    out = io.StringIO()
    jinit.init_tree(KEY, {"w": jinit.ParamSpec((4, 4), jinit.zeros)}, progress=jinit.progress_bar(out))
    assert "1/1 parameters" in out.getvalue() and out.getvalue().endswith("\n")
    with pytest.raises(TypeError, match="`progress`"):
        jinit.init_tree(KEY, {}, progress=3)


# ------------------------------------------------------------------------------------------------------- NNX


class NNXBlock(nnx.Module):
    def __init__(self, rngs):
        self.norm = nnx.LayerNorm(16, scale_init=jinit.ones, bias_init=jinit.zeros, rngs=rngs)
        self.attention = nnx.MultiHeadAttention(
            2, 16, kernel_init=jinit.glorot_uniform(), bias_init=jinit.zeros, decode=False, rngs=rngs
        )
        self.mlp = nnx.Linear(16, 32, kernel_init=jinit.normal(0.02), bias_init=jinit.zeros, rngs=rngs)


class NNXModel(nnx.Module):
    def __init__(self, rngs):
        self.embed = nnx.Embed(50, 16, embedding_init=jinit.normal(0.02), rngs=rngs)
        self.conv = nnx.Conv(16, 16, (3,), kernel_init=jinit.he_normal(), rngs=rngs)
        self.norm = nnx.BatchNorm(16, rngs=rngs)
        self.blocks = nnx.List([NNXBlock(rngs) for _ in range(2)])

        @nnx.split_rngs(splits=3)
        @nnx.vmap(in_axes=(0,), out_axes=0)
        def stack(rngs):
            return NNXBlock(rngs)

        self.stack = stack(rngs)
        self.head = nnx.Linear(16, 4, rngs=rngs)  # Flax's default initializers


def test_nnx_build_gives_eager_construction_bitwise(drawn):
    def make():
        return NNXModel(nnx.Rngs(0))

    ours = jinit.flax.build(make)
    assert isinstance(ours, NNXModel)
    assert same(nnx.state(ours), nnx.state(make()))
    assert "embed/embedding" in drawn and "conv/kernel" in drawn and "blocks/1/attention/out/bias" in drawn
    assert "blocks/1/attention/query/kernel" in drawn and "blocks/0/attention/out/kernel" in drawn  # reshaped
    # the layers stacked by nnx.vmap too: one stacked parameter each; of Flax's own initializers, the head's
    # lecun_normal draw (JAX's truncated normal times its scale) but not its zeros
    stacked = [path for path in drawn if path.startswith("stack")]
    assert "stack/attention/query/kernel" in stacked and len(stacked) == 2 + 8 + 2
    assert "head/kernel" in drawn and "head/bias" not in drawn


def test_nnx_build_probes_of_sharding_do_not_walk_the_trace(monkeypatch):
    # NNX's Variable.set_value probes `getattr(value, "sharding", None)` for every key an Rngs gives; before JAX
    # 0.12 the probe's message walked every traced operation (quadratic tracing), which the trace must not do
    from jax._src.interpreters import partial_eval

    frame = getattr(partial_eval, "JaxprStackFrame", None)
    if not hasattr(frame, "find_progenitors"):
        pytest.skip("this JAX traces without JaxprStackFrame.find_progenitors")
    walks = []
    find = frame.find_progenitors
    monkeypatch.setattr(frame, "find_progenitors", lambda self, t: walks.append(1) or find(self, t))
    saved = {name: jax.core.Tracer.__dict__[name] for name in ("sharding", "device")}
    probed = []

    def make(key):
        model = NNXBlock(nnx.Rngs(params=key))
        x = model.attention.query.kernel[...]
        probed.append((hasattr(x, "sharding"), getattr(x, "device", "none")))
        return model

    ours = jinit.flax.build(make, jax.random.key(5))
    assert same(nnx.state(ours), nnx.state(make(jax.random.key(5))))
    assert walks == [] and probed[0] == (False, "none")  # the traced value has neither, as before
    assert {name: jax.core.Tracer.__dict__[name] for name in saved} == saved  # restored after the trace


def test_nnx_build_under_jit_and_with_arguments():
    ours = jinit.flax.build(NNXBlock, rngs=nnx.Rngs(params=5))
    assert same(nnx.state(ours), nnx.state(NNXBlock(nnx.Rngs(params=5))))
    with pytest.raises(TypeError, match="`constructor`"):
        jinit.flax.build(3)
    with pytest.raises(TypeError, match=r"nnx\.Module"):
        jinit.flax.build(lambda: 3)


def _reused(framework):
    """A reusable jinit initialization of a small model of `framework`, the framework's own, and the model's
    arrays (NNX's module as its state)."""
    if framework == "linen":
        init = jinit.flax.initializer(Mixed())
        return (lambda key: init(key, TOKENS)), (lambda key: Mixed().init(key, TOKENS)), jax.tree.leaves
    if framework == "nnx":
        return (
            jinit.flax.builder(lambda key: NNXModel(nnx.Rngs(key))),
            lambda key: NNXModel(nnx.Rngs(key)),
            lambda model: jax.tree.leaves(nnx.state(model)),
        )
    f = hk.transform_with_state(haiku_forward)
    init = jinit.haiku.initializer(f)
    return (lambda key: init(key, X)), (lambda key: f.init(key, X)), jax.tree.leaves


@pytest.mark.parametrize("framework", ["linen", "nnx", "haiku"])
def test_a_models_parameters_are_freed_with_its_last_reference(framework):
    """No reference cycle holds a model's parameters: a seed sweep's previous model is freed when it is replaced,
    not at the next garbage collection (NNX's `merge` of a `State` leaves one: Flax's `flatten_to_sequence`)."""
    if framework == "nnx" and not jinit.flax._merge_order_works():
        pytest.skip("this Flax lacks the ordering `jinit.flax` merges by: the state is merged, freed by the collector")
    make, _, leaves = _reused(framework)
    make(KEY)  # (the first call plans; what the plan keeps is not the parameters)
    gc.collect()
    gc.disable()
    try:
        model = make(jax.random.key(1))
        arrays = [weakref.ref(x) for x in leaves(model)]
        del model
        assert arrays and all(ref() is None for ref in arrays), sum(ref() is not None for ref in arrays)
    finally:
        gc.enable()


@pytest.mark.parametrize("framework", ["linen", "nnx", "haiku"])
def test_each_call_makes_new_arrays_of_the_frameworks_types(framework):
    """Every leaf is what the framework's own gives (a JAX array, not the literal of a traced constant, such as
    Haiku's ``count`` state), and no two calls share a buffer: donating one model's state to a step must leave
    the next model's alone."""
    make, own, leaves = _reused(framework)
    first, second = leaves(make(KEY)), leaves(make(KEY))
    theirs = leaves(own(KEY))
    assert [type(x) for x in first] == [type(x) for x in theirs], [
        (type(x), type(y)) for x, y in zip(first, theirs, strict=False)
    ]
    assert all(isinstance(x, jax.Array) for x in first)
    shared = [
        i
        for i, (x, y) in enumerate(zip(first, second, strict=True))
        if x.size and x.unsafe_buffer_pointer() == y.unsafe_buffer_pointer()
    ]
    assert not shared, [(first[i].shape, first[i].dtype) for i in shared]


# ----------------------------------------------------------------------------------------------------- Haiku


def haiku_layers(x):
    x = hk.Conv1D(8, 3, w_init=to_haiku(jinit.he_normal()), b_init=to_haiku(jinit.zeros))(x)
    for _ in range(2):
        h = hk.LayerNorm(-1, True, True, scale_init=to_haiku(jinit.ones))(x)
        h = hk.MultiHeadAttention(2, 4, w_init=to_haiku(jinit.glorot_uniform()))(h, h, h)
        x = x + hk.Linear(8, w_init=to_haiku(jinit.normal(0.02)))(h)
    return hk.Linear(3)(x)  # Haiku's default truncated normal


def haiku_forward(x):
    count = hk.get_state("count", [], init=jnp.zeros)
    hk.set_state("count", count + 1)
    return haiku_layers(x)


X = jnp.ones((2, 5, 4))


@pytest.mark.parametrize("f", [hk.transform(haiku_layers), hk.transform_with_state(haiku_forward)])
def test_haiku_gives_f_init_bitwise(f, drawn):
    assert same(jinit.haiku.init(f, KEY, X), f.init(KEY, X))
    assert "conv1_d/w" in drawn and "multi_head_attention_1/query/w" in drawn and "linear_1/w" in drawn
    assert "linear_2/w" in drawn  # Haiku's own initializer: JAX's draw found in the program (`jax_draws`)


def test_haiku_path_keys_and_jit():
    f = hk.transform_with_state(haiku_forward)
    params, _ = jinit.haiku.init(f, KEY, X, path_keys=True)
    alone = jinit.normal(0.02)(jinit.path_key(KEY, "linear/w"), (8, 8))
    np.testing.assert_array_equal(params["linear"]["w"], alone)
    assert same(jax.jit(lambda k: jinit.haiku.init(f, k, X))(KEY), f.init(KEY, X))
    with pytest.raises(TypeError, match="`f`"):
        jinit.haiku.init(haiku_forward, KEY, X)


# ------------------------------------------------------------------------------------- computed from the inputs


def normed(x):
    h = hk.Linear(8, w_init=to_haiku(jinit.glorot_uniform()))(x)
    h = hk.BatchNorm(create_scale=True, create_offset=True, decay_rate=0.9)(h, is_training=True)
    return hk.ExponentialMovingAverage(0.99)(h)


class Normed(nn.Module):
    """Batch norm, and a statistic of the inputs computed at initialization (Flax's batch norm computes none)."""

    @nn.compact
    def __call__(self, x, train=False):
        h = nn.Dense(8, kernel_init=jinit.glorot_uniform())(x)
        h = nn.BatchNorm(use_running_average=not train, momentum=0.9)(h)
        first = self.variable("batch_stats", "first", lambda: h.mean(0, keepdims=True) * 0.1 / (1 - 0.9))
        return h + first.value


NOISE = jax.random.normal(jax.random.key(1), (4, 5))


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
def test_state_computed_from_the_inputs_is_bitwise_the_frameworks(jit):
    """Moving averages computed at initialization are the framework's, eagerly as eagerly (XLA, compiling such
    arithmetic as one program, rounds it its own way: 1 ulp off) and under `jax.jit` as under `jax.jit`."""
    f = hk.transform_with_state(normed)
    cases = [
        (functools.partial(jinit.haiku.init, f), f.init),
        (functools.partial(jinit.flax.init, Normed(), train=True), functools.partial(Normed().init, train=True)),
    ]
    for ours, theirs in cases:
        if jit:
            ours, theirs = jax.jit(ours), jax.jit(theirs)
        assert same(ours(KEY, NOISE), theirs(KEY, NOISE))


def test_only_programs_of_keys_and_moved_values_are_compiled_whole():
    keys = jax.make_jaxpr(lambda k: [jax.random.fold_in(k, i) for i in range(3)])(KEY).jaxpr
    zeros = jax.make_jaxpr(lambda k: (jax.random.split(k), jnp.zeros((3, 4)), jnp.ones(4)[None]))(KEY).jaxpr
    average = jax.make_jaxpr(lambda x: x.mean(0) * 0.1 / (1 - 0.9))(NOISE).jaxpr
    assert program._exact(keys) and program._exact(zeros) and not program._exact(average)
