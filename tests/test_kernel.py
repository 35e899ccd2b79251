"""jinit's kernels compiled with `kernel.OPTIONS` (XLA:CPU's older emitters, 512-bit vectors) give the values of
JAX's default.

This file is the check behind `kernel.CHECKED`. Under a listed jaxlib it guards jinit's kernels: a change that
makes them compute something the two emitters round differently fails here. To check a new jaxlib, run it
there with ``JINIT_CHECK_KERNEL_OPTIONS=1``, which forces the option on: if it passes, the release may be
listed. Without that variable, an unlisted jaxlib (whose kernels compile as JAX's default) skips the
comparisons, as does a jaxlib that refuses the option. Each comparison is bitwise.
"""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jinit
from jinit._src import engine, kernel, rows

SQRT2 = np.float32(np.sqrt(2))


@pytest.fixture
def forced(monkeypatch):
    """The option on, whatever the jaxlib; a function to turn it off (`kernel.refused`), as the plain `jax.jit`."""
    from jaxlib import version

    if version.__version__ not in kernel.CHECKED and not os.environ.get("JINIT_CHECK_KERNEL_OPTIONS"):
        pytest.skip(f"jaxlib {version.__version__} is not in kernel.CHECKED: its kernels compile as JAX's default")
    monkeypatch.setattr(kernel, "checked_jaxlib", lambda: True)
    monkeypatch.setattr(kernel, "refused", False)
    probe = kernel.Kernel(lambda x: x + 1)
    probe(np.float32(1))
    if kernel.refused:
        pytest.skip("this jaxlib refuses kernel.OPTIONS (no older emitters): jinit compiles as JAX does")

    def turn(on: bool) -> None:
        monkeypatch.setattr(kernel, "refused", not on)

    return turn


def both(forced, f, *args):
    """``f(*args)`` with the option and without, as NumPy arrays (a list of leaves)."""
    out = []
    for on in (True, False):
        forced(on)
        out.append([np.asarray(x) for x in jax.tree.leaves(jax.block_until_ready(f(*args)))])
    return out


def bits_of(x):
    x = np.asarray(x)
    return x.view(f"u{x.dtype.itemsize}") if x.dtype.kind in "fc" else x


def assert_bitwise(ours, plain, what):
    assert len(ours) == len(plain), what
    for a, b in zip(ours, plain, strict=True):
        assert a.dtype == b.dtype and a.shape == b.shape, what
        differ = np.count_nonzero(bits_of(a) != bits_of(b))
        assert differ == 0, f"{what}: {differ} of {a.size} elements differ"


def test_the_option_is_used_where_enabled_and_not_otherwise(forced):
    f = kernel.Kernel(lambda x: x * 2)
    forced(True)
    f(np.float32(3))
    assert (f.fast._cache_size(), f.plain._cache_size()) == (1, 0)
    jax.jit(lambda x: f(x))(np.float32(3))  # under a user's trace: the user's program
    assert jax.jit(lambda: f(np.float32(3)))() == 6  # concrete, closed over by a trace: the same
    assert f.plain._cache_size() >= 1
    forced(False)
    before = f.fast._cache_size()
    f(np.float32(4))
    assert f.fast._cache_size() == before


def test_a_refused_option_falls_back_to_jaxs_compilation_for_good(monkeypatch):
    monkeypatch.setattr(kernel, "checked_jaxlib", lambda: True)
    monkeypatch.setattr(kernel, "refused", False)
    monkeypatch.setattr(kernel, "OPTIONS", {"xla_jinit_no_such_option": True})
    f = kernel.Kernel(lambda x: x - 1)
    assert f(np.float32(3)) == 2
    assert kernel.refused and not kernel.enabled()
    g = kernel.Kernel(lambda x: x + 1)
    assert g(np.float32(3)) == 4 and g.fast._cache_size() == 0


def test_an_error_of_the_computation_is_raised_not_taken_for_a_refusal(forced):
    f = kernel.Kernel(lambda x: jnp.reshape(x, (5,)))
    forced(True)
    with pytest.raises(TypeError):
        f(np.zeros(4, np.float32))
    assert not kernel.refused


def test_only_checked_jaxlibs_enable_the_option(monkeypatch):
    monkeypatch.setattr(kernel, "refused", False)
    from jaxlib import version

    assert kernel.enabled() == (version.__version__ in kernel.CHECKED)


# ------------------------------------------------------------------ the transforms, on every float32 input


def unit(mantissas, dtype):
    """JAX's float in [0, 1) from the top bits of a word: every float32 one, for all 2**23 mantissas."""
    one = jax.lax.bitcast_convert_type(mantissas | np.uint32(0x3F800000), jnp.float32)
    return (one - 1).astype(dtype)


MANTISSAS = np.arange(2**23, dtype=np.uint32)


def test_the_normal_transform_agrees_on_every_float32_input(forced):
    def normal(m):
        lo = np.nextafter(np.float32(-1), np.float32(0))
        return SQRT2 * jax.lax.erf_inv(jnp.maximum(lo, unit(m, jnp.float32) * 2 - 1))

    assert_bitwise(*both(forced, kernel.Kernel(normal), MANTISSAS), "normal")


@pytest.mark.parametrize("lower, upper", [(-2.0, 2.0), (-1.3, 0.7), (0.5, 3.0), (-6.0, -0.2)])
def test_the_truncated_normal_transform_agrees_on_every_float32_input(forced, lower, upper):
    def truncated(m, lower, upper):
        a, b = jax.lax.erf(lower / SQRT2), jax.lax.erf(upper / SQRT2)
        return SQRT2 * jax.lax.erf_inv(unit(m, jnp.float32) * (b - a) + a)

    bounds = np.float32(lower), np.float32(upper)
    assert_bitwise(*both(forced, kernel.Kernel(truncated), MANTISSAS, *bounds), f"truncated {bounds}")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", ["erf", "erf_inv", "exp", "log", "log1p", "expm1", "sqrt", "sin", "cos"])
def test_the_functions_of_the_kernels_agree(forced, name, dtype):
    # (not rsqrt, which the options round otherwise in float32: test_no_kernel_computes_a_reciprocal_square_root)
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.standard_normal(2**18) * s for s in (1e-3, 0.3, 1, 30)])
    x = np.abs(x) if name in ("log", "sqrt") else np.tanh(x) if name == "erf_inv" else x
    f = getattr(jax.lax, name)
    with jax.enable_x64(dtype == "float64"):
        assert_bitwise(*both(forced, kernel.Kernel(f), x.astype(dtype)), name)


# ------------------------------------------------------------------------------ the initializers' kernels

FAMILIES = {
    "normal": jinit.normal(0.3),
    "uniform": jinit.uniform(0.2),
    "random_uniform": jinit.random_uniform(-0.3, 0.7),
    "truncated_normal": jinit.truncated_normal(0.5),
    "torch trunc_normal": jinit.trunc_normal(std=1.0, a=-1.5, b=0.5),
    "glorot_normal": jinit.glorot_normal(),
    "untruncated variance scaling": jinit.variance_scaling(2.0, "fan_avg", "untruncated_normal"),
    "he_uniform": jinit.he_uniform(),
    "scaled": jinit.scaled(jinit.glorot_uniform(), 0.5),
    "orthogonal": jinit.orthogonal(1.3),
    "delta_orthogonal": jinit.delta_orthogonal(),
    "sparse": jinit.sparse(0.3),
    "stft": jinit.stft(),
}
SHAPES = {"sparse": (40, 16), "stft": (16, 3, 9), "delta_orthogonal": (3, 3, 16, 16)}
"""Each family's shape where it needs one of its own; the others draw a convolution kernel's (6, 5, 8, 16)."""
KEYS = {
    "threefry": lambda: jax.random.key(7),
    "rbg": lambda: jax.random.key(7, impl="rbg"),
    "unsafe_rbg": lambda: jax.random.key(7, impl="unsafe_rbg"),
}


def draw(init, key, shape, dtype):
    """A sample by its shape's own kernel, as the engine draws a parameter of JAX's own stream."""
    law = init.law(shape, np.dtype(dtype)) if isinstance(init, jinit.Initializer) else None
    if law is not None:
        return engine.draw(law, key, shape, np.dtype(dtype), per_shape=True)
    return init(key, shape, dtype)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float16", "complex64", "float64"])
@pytest.mark.parametrize("family", FAMILIES)
def test_every_family_agrees_in_every_dtype_under_rbg(forced, family, dtype):
    init, shape, key = FAMILIES[family], SHAPES.get(family, (6, 5, 8, 16)), KEYS["rbg"]()
    with jax.enable_x64(dtype == "float64"):
        try:
            jax.eval_shape(lambda key: init(key, shape, dtype), key)
        except TypeError as error:  # a dtype the family does not take (real-valued families and complex64)
            assert "dtype" in str(error)
            return
        assert_bitwise(*both(forced, draw, init, key, shape, dtype), f"{family} {dtype}")


def test_every_family_agrees_under_unsafe_rbg(forced):
    key = KEYS["unsafe_rbg"]()
    for family, init in FAMILIES.items():  # (other dtypes: the same bits, cast as under rbg above)
        shape = SHAPES.get(family, (6, 5, 8, 16))
        assert_bitwise(*both(forced, draw, init, key, shape, "float32"), family)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "complex64", "float64"])
def test_the_rows_kernel_agrees_for_every_family(forced, dtype):
    shape, keys = (6, 5, 8, 16), jax.random.split(KEYS["threefry"](), 3)
    with jax.enable_x64(dtype == "float64"):
        requests = []
        for init in FAMILIES.values():
            try:
                law = init.law(shape, np.dtype(dtype))
            except TypeError:  # a dtype the family does not take
                continue
            if law is not None and rows.drawable(law, 3840, np.dtype(dtype)):
                requests.append(rows.Request(law, rows.key_words(keys), 3840, (3, *shape), np.dtype(dtype)))
        assert len(requests) >= (4 if dtype == "complex64" else 8), len(requests)
        assert_bitwise(*both(forced, rows.draw, requests), f"rows {dtype}")


@pytest.mark.parametrize("impl", list(KEYS))
def test_only_draws_of_rngbitgenerator_bits_ask_for_the_option(forced, impl):
    forced(True)
    law = jinit.normal().law((3, 1000), np.dtype(np.float32))
    before = engine._exact.fast._cache_size(), engine._exact.plain._cache_size()
    engine.draw(law, KEYS[impl](), (3, 1000), np.dtype(np.float32), per_shape=True)
    after = engine._exact.fast._cache_size(), engine._exact.plain._cache_size()
    generated = impl != "threefry"  # threefry's normal samples run faster as JAX compiles them
    assert (after[0] > before[0], after[1] > before[1]) == (generated, not generated)


@pytest.mark.parametrize("impl", list(KEYS))
def test_jaxs_keys_and_bits_agree(forced, impl):
    key = KEYS[impl]()

    def keys_and_bits(key):
        words = jnp.arange(300, dtype=jnp.uint32)
        folded = jax.vmap(lambda w: jax.random.fold_in(key, w))(words)
        return [jax.random.key_data(folded), jax.random.key_data(jax.random.split(key, 300)),
                jax.random.bits(key, (300, 77)), jax.random.normal(key, (300, 77))]  # fmt: skip

    assert_bitwise(*both(forced, kernel.Kernel(keys_and_bits), key), impl)


def test_no_kernel_computes_a_reciprocal_square_root(forced, monkeypatch):
    """The one function the options round otherwise (`kernel.OPTIONS`) is in none of the kernels above, as XLA
    optimizes them; where XLA writes one (a division by a square root), this finds it."""
    forced(True)
    calls, call = [], kernel.Kernel.__call__

    def recorded(self, *args, **kwargs):
        if self.asks(args):
            calls.append((self, args, kwargs))
        return call(self, *args, **kwargs)

    monkeypatch.setattr(kernel.Kernel, "__call__", recorded)
    shape = (6, 5, 8, 16)
    for family, init in FAMILIES.items():  # (under unsafe_rbg, the same kernels of other bits)
        draw(init, KEYS["rbg"](), SHAPES.get(family, shape), "float32")
    f32, words = np.dtype(np.float32), rows.key_words(jax.random.split(KEYS["threefry"](), 3))
    laws = [law for init in FAMILIES.values() if (law := init.law(shape, f32)) and rows.drawable(law, 3840, f32)]
    rows.draw([rows.Request(law, words, 3840, (3, *shape), f32) for law in laws])
    divided = kernel.Kernel(lambda x: 1 / jnp.sqrt(x))  # (what the check finds)
    divided(np.ones(64, np.float32))
    programs = {}
    for kern, args, kwargs in calls:
        lowered = kern.fast.lower(*args, **kwargs)
        programs.setdefault(lowered.as_text(), lowered)  # (each distinct program once)
    found = [lowered for lowered in programs.values() if "rsqrt(" in lowered.compile().as_text()]
    assert len(programs) > len(FAMILIES) and len(found) == 1, len(found)
