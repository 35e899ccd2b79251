"""Key programs run on the host (`jinit._src.host_keys`): JAX's keys, bitwise, for every implementation it runs,
XLA's integer semantics, and JAX's own evaluation wherever it cannot."""

import pytest

pytest.importorskip("flax", reason="flax is an optional extra: pip install -e '.[flax]'")
pytest.importorskip("haiku", reason="haiku is an optional extra: pip install -e '.[haiku]'")

import flax.linen as nn
import haiku as hk
import jax
import jax.numpy as jnp
import numpy as np
from compiling import compiled
from flax import nnx
from jax.extend import core as jex_core
from jax.extend import random as jex_random

import jinit
import jinit.flax
import jinit.haiku
from jinit._src import distributions, host_keys, program
from jinit.haiku import to_haiku

X = jnp.linspace(-1, 1, 16).reshape(2, 8)
HOST = ["threefry2x32", "rbg"]  # whose key derivation is threefry's: run on the host
OTHERS = ["unsafe_rbg", "philox4x32", "threefry4x32"]  # their own hashes or XLA's bit generator: JAX's


class Block(nn.Module):
    @nn.compact
    def __call__(self, x, _=None):
        x = nn.Dense(8, kernel_init=jinit.normal(0.02), bias_init=jinit.zeros)(x)
        return nn.LayerNorm(scale_init=jinit.ones, bias_init=jinit.zeros)(x), None


def linen_scan():
    inner = nn.scan(nn.remat(Block), variable_axes={"params": 0}, split_rngs={"params": True}, length=3)

    class Model(nn.Module):
        @nn.compact
        def __call__(self, x):
            x = nn.Dense(8, kernel_init=jinit.he_normal())(x)
            return inner(name="stack")(x, None)[0]

    return Model()


def nnx_vmap(key):
    @nnx.split_rngs(splits=4)
    @nnx.vmap(in_axes=(0,), out_axes=0)
    def stack(rngs):
        return nnx.Linear(8, 8, kernel_init=jinit.normal(0.02), bias_init=jinit.zeros, rngs=rngs)

    return stack(nnx.Rngs(key))


def haiku_stack(x):
    @hk.experimental.layer_stack(3)
    def layer(x):
        x = hk.Linear(8, w_init=to_haiku(jinit.normal(0.02)), b_init=to_haiku(jinit.zeros))(x)
        return hk.Linear(8, w_init=to_haiku(jinit.he_normal()))(x)  # Haiku's own zeros in the body: not the host's

    return layer(x)


def plans(key):
    """The plans of a scanned linen model, a vmapped NNX stack and a Haiku layer stack, for `key`."""
    linen = jinit.flax.initializer(linen_scan()).planned.plan((key, X), {})
    nnx_plan = jinit.flax.builder(nnx_vmap).planned.plan((key,), {})
    haiku = jinit.haiku.initializer(hk.transform(haiku_stack)).planned.plan((key, X), {})
    return {"linen": linen, "nnx": nnx_plan, "haiku": haiku}


def keys_of(jaxpr):
    return jaxpr.replace(outvars=[v for v in jaxpr.outvars if program._is_key(v)])


def plain(x):
    return np.asarray(jax.random.key_data(x) if jnp.issubdtype(x.dtype, jax.dtypes.prng_key) else x)


@pytest.mark.parametrize("partitionable", [True, False], ids=["partitionable", "not partitionable"])
@pytest.mark.parametrize("impl", HOST)
def test_models_key_programs_on_the_host_are_jaxs(impl, partitionable):
    if not partitionable and impl != "threefry2x32":
        pytest.skip("jax_threefry_partitionable changes threefry2x32 only")
    with jax.threefry_partitionable(partitionable):
        key = jax.random.key(11, impl=impl)
        for name, p in plans(key).items():
            jaxpr = keys_of(p.found.jaxpr)  # (a framework's own zeros are JAX's to compute)
            host = host_keys.compile(jaxpr, p.found.consts)
            assert host is not None, name
            nnx_args = (key,) if name == "nnx" else (key, X)
            used = [x for x, u in zip(p.program.arguments(nnx_args, {}), p.found.used, strict=True) if u]
            ours = host(used)
            closed = jex_core.ClosedJaxpr(jaxpr, list(p.found.consts))
            compiled = jax.jit(jex_core.jaxpr_as_fun(closed))(*used)
            eager = program._bind_each(jaxpr, p.found.consts, used)
            assert len(ours) == len(compiled) == len(eager) > 0, name
            for a, b, c in zip(ours, compiled, eager, strict=True):
                assert a.dtype == b.dtype and a.shape == b.shape, name
                np.testing.assert_array_equal(plain(a), plain(b))
                np.testing.assert_array_equal(plain(a), plain(c))


@pytest.mark.parametrize("impl", OTHERS)
def test_other_implementations_are_left_to_jax(impl, key_of):
    key = key_of(11, impl)
    p = jinit.flax.initializer(linen_scan()).planned.plan((key, X), {})
    assert host_keys.compile(keys_of(p.found.jaxpr), p.found.consts) is None


def test_a_plan_runs_its_keys_on_the_host_and_gives_the_frameworks_values(monkeypatch):
    calls = []
    compile_ = host_keys.compile

    def counted(jaxpr, consts):
        run = compile_(jaxpr, consts)
        return None if run is None else lambda args: calls.append(1) or run(args)

    monkeypatch.setattr(host_keys, "compile", counted)
    module, key = linen_scan(), jax.random.key(4)
    init = jinit.flax.initializer(module)
    ours, theirs = init(key, X), module.init(key, X)
    assert calls == [1]
    assert jax.tree.all(jax.tree.map(lambda a, b: np.asarray(a).tobytes() == np.asarray(b).tobytes(), ours, theirs))
    # under a user's trace (`vmap` over keys), JAX evaluates the program
    keys = jax.random.split(key, 2)
    batched = jax.vmap(lambda k: init(k, X))(keys)
    assert calls == [1]
    for i in range(2):
        expected = module.init(keys[i], X)
        assert jax.tree.all(jax.tree.map(lambda a, b, i=i: np.array_equal(a[i], b), batched, expected))


def test_a_failed_check_leaves_the_program_to_jax(monkeypatch):
    p = plans(jax.random.key(2))["linen"]
    jaxpr = keys_of(p.found.jaxpr)
    assert host_keys.compile(jaxpr, p.found.consts) is not None
    host_keys._verified.cache_clear()
    try:
        monkeypatch.setitem(host_keys._OPS, "threefry2x32", lambda *a: [np.zeros_like(a[2]), np.zeros_like(a[3])])
        host_keys._key_program.cache_clear()  # (its programs are built with the host's operations)
        assert host_keys.compile(jaxpr, p.found.consts) is None  # a JAX whose keys differ: never used
    finally:
        host_keys._verified.cache_clear()
        host_keys._key_program.cache_clear()


@pytest.mark.parametrize("partitionable", [True, False], ids=["partitionable", "not partitionable"])
@pytest.mark.parametrize("impl", [jex_random.threefry_prng_impl, jex_random.rbg_prng_impl], ids=lambda i: i.name)
def test_known_keys_are_those_of_jaxs_compiled_example(impl, partitionable):
    """`host_keys.KNOWN` is what JAX's compiled `example` gives under this release (so listing the release in
    `CHECKED` is right), and what the host computes from JAX's program."""
    if host_keys._release() not in host_keys.CHECKED:
        pytest.skip(f"jax {jax.__version__} is not in host_keys.CHECKED: its keys are compiled and compared")
    with jax.threefry_partitionable(partitionable):
        n_keys = 4  # (the example's keys, not threefry's bits)
        compiled = host_keys._jax_example(host_keys.example_words(impl), impl)[:n_keys]
        assert host_keys.digest([np.asarray(x) for x in compiled]) == host_keys.KNOWN[(impl.name, partitionable)]
        host_keys._verified.cache_clear()
        try:
            assert host_keys.verified(impl)
        finally:
            host_keys._verified.cache_clear()


@pytest.mark.parametrize("bounds", sorted(distributions.KNOWN_ERFS, key=str), ids=str)
def test_known_erfs_are_those_xla_computes(bounds):
    """`distributions.KNOWN_ERFS` is what `_erf_kernel` computes under this release (so reading them under the
    releases of `CHECKED` is right), and under one of those, on CPU, `erf_bounds` gives them without compiling."""
    if not host_keys.checked():
        pytest.skip(f"jax {jax.__version__} on {jax.default_backend()}: the erfs are computed")
    lower, upper, dtype = bounds
    with jax.enable_x64(dtype == np.float64), jax.ensure_compile_time_eval():
        distributions._erf_bounds.cache_clear()
        distributions._erf_kernel.clear_cache()
        try:
            with compiled() as names:
                given = distributions.erf_bounds(lower, upper, dtype)
        finally:
            distributions._erf_bounds.cache_clear()
        computed = tuple(float(x) for x in distributions._erf_kernel(lower, upper, dtype=dtype))
    assert computed == distributions.KNOWN_ERFS[bounds] == given
    assert names == []


def test_erf_bounds_follow_x64_once_cached():
    """A float64 bound's erf is computed in float32 without x64 and in float64 with it, whatever was asked first
    (the cache is keyed by the dtype XLA computes in)."""
    bounds = (-1.25, 2.75)  # (bounds no other test asks for)
    with jax.enable_x64(False):
        narrow = distributions.erf_bounds(*bounds, np.dtype(np.float64))
    with jax.enable_x64(True):
        wide = distributions.erf_bounds(*bounds, np.dtype(np.float64))
        with jax.ensure_compile_time_eval():
            expected = tuple(float(x) for x in distributions._erf_kernel(*bounds, dtype=np.dtype(np.float64)))
    assert wide == expected
    assert narrow == tuple(float(np.float32(x)) for x in narrow) != wide


def test_under_a_checked_release_the_check_compiles_nothing_and_still_catches_a_wrong_host(monkeypatch):
    """Under a `CHECKED` release on CPU the host's keys are compared with `KNOWN` (JAX's program is not compiled);
    a host that computes other keys is still caught (then JAX's program is compiled, and disagrees); under any
    other release, JAX's program is compiled and compared."""
    impl = jex_random.threefry_prng_impl
    compiled = []
    reference = host_keys.reference
    monkeypatch.setattr(host_keys, "reference", lambda *a: compiled.append(a) or reference(*a))
    monkeypatch.setattr(host_keys, "checked", lambda: True)
    host_keys._verified.cache_clear()
    try:
        assert host_keys.verified(impl) and compiled == []
        host_keys._verified.cache_clear()
        monkeypatch.setitem(host_keys._OPS, "threefry2x32", lambda *a: [np.zeros_like(a[2]), np.zeros_like(a[3])])
        host_keys._key_program.cache_clear()  # (its programs are built with the host's operations)
        assert not host_keys.verified(impl) and len(compiled) == 1
        monkeypatch.undo()
        monkeypatch.setattr(host_keys, "reference", lambda *a: compiled.append(a) or reference(*a))
        monkeypatch.setattr(host_keys, "checked", lambda: False)
        host_keys._verified.cache_clear()
        host_keys._key_program.cache_clear()
        assert host_keys.verified(impl) and len(compiled) == 2
    finally:
        host_keys._verified.cache_clear()
        host_keys._key_program.cache_clear()


def test_the_hosts_keys_reach_the_device_without_compiling():
    """With no mesh in effect, the host's keys become arrays on the default device, uncommitted, as
    `jnp.asarray` makes them, with nothing compiled (`jnp.asarray` compiles a ``stage`` per new shape)."""
    closed = jax.make_jaxpr(lambda k: (jax.random.split(k, (3, 7)), jax.random.key_data(k)[0] + 3))(jax.random.key(0))
    run = host_keys.compile(closed.jaxpr, closed.consts)
    with compiled() as names:
        keys, word = run([jax.random.key(5)])
    expected_keys, expected_word = (
        jax.random.split(jax.random.key(5), (3, 7)),
        jax.random.key_data(jax.random.key(5))[0] + 3,
    )
    assert names == []
    np.testing.assert_array_equal(jax.random.key_data(keys), jax.random.key_data(expected_keys))
    np.testing.assert_array_equal(word, expected_word)
    for ours, theirs in ((keys, expected_keys), (word, expected_word)):
        assert not ours.committed and ours.sharding == theirs.sharding and ours.dtype == theirs.dtype


def test_floats_are_left_to_jax():
    closed = jax.make_jaxpr(lambda k, x: (jax.random.fold_in(k, 3), x * 2.0))(jax.random.key(0), 1.0)
    assert host_keys.compile(closed.jaxpr, closed.consts) is None
    closed = jax.make_jaxpr(lambda k: jax.random.normal(k, (3,)))(jax.random.key(0))
    assert host_keys.compile(closed.jaxpr, closed.consts) is None


@pytest.mark.parametrize("carry", [None, 0], ids=["no carry", "carry"])
@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
def test_a_scan_without_a_carry_runs_its_layers_at_once(carry, reverse, monkeypatch):
    """Its body batched over the layers (one pass), with JAX's keys; a scan with a carry, layer by layer."""
    batched = []
    original = host_keys._Compiled._batched_scan

    def spy(self, eqn, wanted):
        out = original(self, eqn, wanted)
        if eqn.params["length"] == 6:  # (this program's, not the check's)
            batched.append(out is not None)
        return out

    monkeypatch.setattr(host_keys._Compiled, "_batched_scan", spy)

    def keys(key, i):
        def layer(c, k):
            a, b = jax.random.split(k)
            if carry is not None:  # (a carry the layers change and read)
                a, c = jax.random.fold_in(a, c), c + 1
            return c, [jax.random.fold_in(a, i), jax.random.fold_in(b, 7), k]

        _, ys = jax.lax.scan(layer, carry, jax.random.split(key, 6), reverse=reverse)
        return [jax.random.key_data(y) for y in ys]

    closed = jax.make_jaxpr(keys)(jax.random.key(3), np.uint32(5))
    run = host_keys.compile(closed.jaxpr, closed.consts)
    assert run is not None
    ours = [
        jax.random.key_data(k) if jnp.issubdtype(k.dtype, jax.dtypes.prng_key) else k
        for k in run([jax.random.key(3), np.uint32(5)])
    ]
    for a, b in zip(ours, keys(jax.random.key(3), np.uint32(5)), strict=True):
        np.testing.assert_array_equal(a, b)
    assert batched == ([True] if carry is None else [])


@pytest.mark.parametrize("impl", HOST)
def test_independent_fold_ins_run_as_one_batched_step_with_jaxs_keys(impl, monkeypatch):
    """A parameter's fold-in each, as linen folds a path's hash and NNX a stream's count (a chain of counters):
    those that read none of each other's keys run as one step per kind, later ones (a fold-in of a fold-in) in a
    round of their own, and every key is JAX's."""
    batches = []
    original = host_keys._fold_ins

    def spy(eqns):
        batches.append(len(eqns))
        return original(eqns)

    monkeypatch.setattr(host_keys, "_fold_ins", spy)

    def keys(key, count):
        linen = [jax.random.fold_in(key, h) for h in (17, 2**31 + 5, 99, 4, 123456789)]
        counted = []
        for _ in range(6):  # (NNX: the count read, then incremented)
            counted.append(jax.random.fold_in(key, count))
            count = count + 1
        deeper = [jax.random.fold_in(k, 3) for k in linen]  # (each after its own parent)
        layers = jax.random.split(key, 3)
        batched = [jax.vmap(jax.random.fold_in, (0, None))(layers, w) for w in range(4)]  # (batched keys: a kind)
        return [jax.random.key_data(k) for k in (*linen, *counted, *deeper, *batched)]

    with jax.default_prng_impl(impl):
        key = jax.random.key(11)
        closed = jax.make_jaxpr(keys)(key, np.uint32(40))
        run = host_keys.compile(closed.jaxpr, closed.consts)
        assert run is not None
        ours, theirs = run([key, np.uint32(40)]), keys(key, np.uint32(40))
    assert sorted(batches) == [4, 5, 11]  # (the batched layers', the deeper ones', the first ones')
    assert len(ours) == len(theirs) == 20
    for a, b in zip(ours, theirs, strict=True):
        np.testing.assert_array_equal(a, b)


def test_a_scan_whose_body_cannot_be_batched_runs_layer_by_layer(monkeypatch):
    def cannot(*_):
        raise host_keys.Unsupported("a JAX whose bodies do not batch")

    monkeypatch.setattr(host_keys.jex_core, "jaxpr_as_fun", cannot)

    def keys(key):
        return jax.random.key_data(
            jax.lax.scan(lambda c, k: (c, jax.random.fold_in(k, 9)), None, jax.random.split(key, 4))[1]
        )

    closed = jax.make_jaxpr(keys)(jax.random.key(4))
    run = host_keys._Compiled(closed.jaxpr)
    np.testing.assert_array_equal(
        run([host_keys._host(c) for c in closed.consts], [np.asarray(jax.random.key_data(jax.random.key(4)))])[0],
        keys(jax.random.key(4)),
    )


def test_moves_of_key_arrays_are_jaxs():
    """Reshapes, transposes and broadcasts of keys, as their data (with the key's trailing axes) moves."""

    def keys(key):
        k = jax.random.split(key, 6).reshape(2, 3)
        moved = [k, k.T, jnp.broadcast_to(k[:, None, :], (2, 4, 3)), jnp.concatenate([k, k[::-1]]), k[1:, 0]]
        return [jax.random.key_data(x) for x in [*moved, jax.vmap(jax.vmap(lambda x: jax.random.fold_in(x, 3)))(k.T)]]

    closed = jax.make_jaxpr(keys)(jax.random.key(5))
    assert {"reshape", "transpose", "broadcast_in_dim"} <= {e.primitive.name for e in closed.jaxpr.eqns}
    run = host_keys.compile(closed.jaxpr, closed.consts)
    assert run is not None
    for a, b in zip(run([jax.random.key(5)]), keys(jax.random.key(5)), strict=True):
        np.testing.assert_array_equal(a, b)


def test_other_operations_on_keys_are_left_to_jax():
    closed = jax.make_jaxpr(lambda k, c: jax.lax.select(c, k, jax.random.fold_in(k, 1)))(jax.random.key(0), True)
    assert host_keys.compile(closed.jaxpr, closed.consts) is None


WORDS = np.array([0, 1, 31, 32, 33, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF], np.uint32)


@pytest.mark.parametrize("dtype", [np.uint32, np.int32, np.uint8, np.int64])
def test_integer_operations_have_xlas_semantics(dtype):
    """Shifts by the width or more, wrapping arithmetic, conversions, selections, as XLA computes them."""
    if np.dtype(dtype).itemsize == 8 and not jax.config.jax_enable_x64:
        pytest.skip("64-bit integers need jax_enable_x64")
    x = WORDS.astype(dtype)
    s = np.array([0, 1, 7, 8, 31, 32, 0xFFFFFFFF, 200], np.uint32).astype(dtype)  # (-1 when signed)

    def ops(x, s):
        lax = jax.lax
        return [
            lax.shift_left(x, s), lax.shift_right_logical(x, s), lax.shift_right_arithmetic(x, s),
            x + s * x - s, x ^ s, x & ~s, x | s, jnp.maximum(x, s), jnp.minimum(x, s), -x,
            lax.convert_element_type(x, np.uint8), lax.convert_element_type(x, np.int32),
            jnp.where(x < s, x, s), jnp.where(x == s, x, s), x != s, x >= s,
            lax.iota(np.uint32, 5), lax.slice(jnp.concatenate([x, s]), (0,), (16,), (3,)), x.reshape(2, 4).T,
            jnp.stack([x, s], 1),
            jnp.broadcast_to(x[:, None], (8, 3)),
        ]  # fmt: skip

    closed = jax.make_jaxpr(ops)(x, s)
    run = host_keys.compile(closed.jaxpr, closed.consts)
    assert run is not None
    for ours, theirs in zip(run([x, s]), jax.jit(ops)(x, s), strict=True):
        assert ours.dtype == theirs.dtype
        np.testing.assert_array_equal(np.asarray(ours), np.asarray(theirs))


def key_program(key, folds):
    """A key program as an unrolled model's: `folds` fold-ins of `key`, a split and a draw of bits."""

    def f(key):
        folded = [jax.random.key_data(jax.random.fold_in(key, 1000 + i)) for i in range(folds)]
        return [*folded, jax.random.key_data(jax.random.split(key, 3)), jax.random.bits(key, (4,))]

    return jax.make_jaxpr(f)(key)


@pytest.mark.parametrize("impl", OTHERS)
def test_only_rngbitgenerator_key_operations_are_compiled_and_they_give_the_eager_values(impl, monkeypatch, key_of):
    key = key_of(5, impl)
    closed = key_program(key, program.WHOLE + 6)  # too long to compile whole: bound one by one
    generated = impl == "unsafe_rbg"
    key_ops = [e for e in closed.jaxpr.eqns if e.primitive.name in program.KEY_OPS]
    assert key_ops and all(program._generated_keys(e) == generated for e in key_ops)
    before = program._key_op.fast._cache_size() + program._key_op.plain._cache_size()
    ours = program._bind_each(closed.jaxpr, closed.consts, [key])
    compiled = program._key_op.fast._cache_size() + program._key_op.plain._cache_size() - before
    assert (compiled > 0) == generated
    monkeypatch.setattr(program, "_generated_keys", lambda eqn: False)  # every operation bound eagerly
    eager = program._bind_each(closed.jaxpr, closed.consts, [key])
    assert len(ours) == len(eager) == program.WHOLE + 8
    for a, b in zip(ours, eager, strict=True):
        np.testing.assert_array_equal(plain(a), plain(b))


def test_a_short_unsafe_rbg_key_program_is_compiled_whole_with_the_eager_values(monkeypatch):
    key = jax.random.key(5, impl="unsafe_rbg")
    closed = key_program(key, 5)
    assert program._compilable_keys(closed.jaxpr) and program._exact(closed.jaxpr)
    ours = program.evaluator(closed.jaxpr, closed.consts)([key])
    monkeypatch.setattr(program, "_generated_keys", lambda eqn: False)  # every operation bound eagerly
    eager = program._bind_each(closed.jaxpr, closed.consts, [key])
    assert len(ours) == len(eager) == 7
    for a, b in zip(ours, eager, strict=True):
        np.testing.assert_array_equal(plain(a), plain(b))
    other = jex_random.define_prng_impl(  # an implementation of its own (not RngBitGenerator's): bound, not compiled
        key_shape=(2,),
        seed=lambda s: jnp.stack([s.astype(jnp.uint32), jnp.uint32(1)]),
        split=lambda k, shape: jnp.zeros((*shape, 2), jnp.uint32),
        random_bits=lambda k, width, shape: jnp.zeros(shape, jnp.uint32),
        fold_in=lambda k, d: k ^ d,
        name="jinit_test_other",
        tag="jto",
    )
    assert not program._compilable_keys(key_program(jax.random.key(5, impl=other), 2).jaxpr)
