"""JAX's own initializers in a model, found in its program and drawn by the engine (`jinit._src.jax_draws`).

A model as its user wrote it before jinit (Flax's defaults, `jax.nn.initializers`) gets the engine for the
parameters that are a draw of JAX's ``normal``, ``uniform`` or ``truncated_normal`` times a constant: each must be
bitwise what the model's eager initialization gives, under every PRNG implementation, and be drawn by the engine;
anything that is not surely such a draw must be left to the program (still bitwise, not drawn).
"""

from typing import Any

import pytest

pytest.importorskip("flax", reason="flax is an optional extra: pip install -e '.[flax]'")

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

import jinit.flax
from jinit._src import host_keys, jax_draws

J = jax.nn.initializers
KEY = jax.random.key(0)

INITS = {
    "normal": J.normal(0.02),
    "uniform": J.uniform(0.3),
    "truncated_normal": J.truncated_normal(0.5, lower=-1.0, upper=3.0),
    "lecun_normal": J.lecun_normal(),
    "glorot_normal": J.glorot_normal(),
    "he_normal": J.he_normal(),
    "lecun_uniform": J.lecun_uniform(),
    "glorot_uniform": J.glorot_uniform(),
    "he_uniform": J.he_uniform(),
    "fan_avg_normal": J.variance_scaling(1.7, "fan_avg", "normal", in_axis=0, out_axis=-1),
    "fan_out_uniform": J.variance_scaling(0.3, "fan_out", "uniform"),
    "embed": nn.initializers.variance_scaling(1.0, "fan_in", "normal", out_axis=0),  # Flax's `default_embed_init`
}
SHAPES = [(64, 32), (3, 5), (2, 3, 64)]  # drawn by the rows, by a kernel (no row width), by the rows (a 3-d fan)


def same(a, b):
    return jax.tree.structure(a) == jax.tree.structure(b) and jax.tree.all(
        jax.tree.map(lambda x, y: x.dtype == y.dtype and np.asarray(x).tobytes() == np.asarray(y).tobytes(), a, b)
    )


class Param(nn.Module):
    initializer: Any
    shape: tuple
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self):
        return self.param("w", self.initializer, self.shape, self.dtype)


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("name", INITS)
def test_jax_initializers_are_drawn_by_the_engine_bitwise(name, shape, drawn):
    module = Param(INITS[name], shape)
    assert same(jinit.flax.init(module, KEY), module.init(KEY))
    assert drawn == ["params/w"]


def test_a_model_of_several_normals_and_uniforms_shares_their_loops_bitwise(drawn):
    class Mixed(nn.Module):
        @nn.compact
        def __call__(self, x):
            x = nn.Dense(64, kernel_init=J.normal(0.02))(x)
            x = nn.Dense(64, kernel_init=J.normal(0.003))(x)
            x = nn.Dense(128, kernel_init=J.glorot_uniform())(x)
            return nn.Dense(64, kernel_init=J.he_uniform())(x)

    module, x = Mixed(), jnp.ones((1, 64))
    assert same(jinit.flax.init(module, KEY, x), module.init(KEY, x))
    assert len(drawn) == 4


@pytest.mark.parametrize("name", ["normal", "lecun_normal", "glorot_uniform"])
def test_under_jit_the_values_are_the_eager_ones(name, drawn):
    module = Param(INITS[name], (64, 32))
    assert same(jax.jit(lambda key: jinit.flax.init(module, key))(KEY), module.init(KEY))
    assert drawn == ["params/w"]


@pytest.mark.parametrize("name", ["normal", "lecun_normal", "glorot_uniform"])
def test_float64_is_drawn_bitwise(name, drawn):
    with jax.enable_x64(True):
        module = Param(INITS[name], (64, 32), jnp.float64)
        assert same(jinit.flax.init(module, KEY), module.init(KEY))
    assert drawn == ["params/w"]


@pytest.mark.parametrize("partitionable", [True, False], ids=["partitionable", "not partitionable"])
@pytest.mark.parametrize("impl", ["threefry2x32", "rbg", "unsafe_rbg", "philox4x32"])
def test_every_prng_implementation(impl, partitionable, key_of, drawn):
    if not partitionable and impl != "threefry2x32":
        pytest.skip("jax_threefry_partitionable changes threefry2x32 only")
    key = key_of(5, impl)

    class Two(nn.Module):
        @nn.compact
        def __call__(self, x):
            return nn.Dense(4)(nn.Dense(64, kernel_init=J.normal(0.02))(x))

    with jax.threefry_partitionable(partitionable):
        module, x = Two(), jnp.ones((1, 32))
        assert same(jinit.flax.init(module, key, x), module.init(key, x))
        module, x = vmapped(Two, 0)(), jnp.ones((3, 1, 32))  # (a vmap's batched keys)
        assert same(jinit.flax.init(module, key, x), module.init(key, x))
    assert sorted(drawn) == ["params/Dense_0/kernel"] * 2 + ["params/Dense_1/kernel"] * 2  # (each model's)


def vmapped(module, axis):
    """`module` for each of a batch of inputs, its parameters stacked along `axis` (`nn.vmap`)."""
    return nn.vmap(module, variable_axes={"params": axis}, split_rngs={"params": True}, in_axes=0, out_axes=0)


class Wrapped(nn.Module):  # (a vmapped module inside a scan)
    @nn.compact
    def __call__(self, x, _=None):
        y, _ = vmapped(DefaultBlock, 0)()(x)
        return y, None


@pytest.mark.parametrize(
    "make",
    [
        lambda: vmapped(DefaultBlock, 0)(),
        lambda: vmapped(DefaultBlock, 1)(),  # (the stacked axis second: a move)
        lambda: nn.scan(Wrapped, variable_axes={"params": 0}, split_rngs={"params": True}, length=2)(),
    ],
    ids=["vmap", "vmap along axis 1", "vmap in a scan"],
)
def test_a_vmap_of_jax_initializers_is_drawn_by_the_engine_bitwise(make, drawn):
    module, x = make(), jnp.ones((3, 2, 8))
    assert same(jinit.flax.init(module, KEY, x, None), module.init(KEY, x, None))
    assert len(drawn) == 2 and all(path.endswith("/kernel") for path in drawn)


class DefaultBlock(nn.Module):
    @nn.compact
    def __call__(self, x, _=None):
        return nn.Dense(8, kernel_init=J.he_uniform())(nn.relu(nn.Dense(8)(x))), None  # lecun_normal, he_uniform


class NormalBlock(nn.Module):
    @nn.compact
    def __call__(self, x, _=None):
        return nn.Dense(64, kernel_init=J.normal(0.02))(nn.Dense(64)(x)), None


def test_a_normal_in_a_scan_is_left_to_the_program(drawn):
    """In a scan's body, which the framework runs compiled, XLA merges the normal's last constant factor with the
    product (an ulp apart from eager operations on a quarter of the elements): that draw is the program's, bitwise
    ``module.init``'s; the truncated normal beside it is drawn."""
    scan = nn.scan(NormalBlock, variable_axes={"params": 0}, split_rngs={"params": True}, length=3)
    module, x = scan(), jnp.ones((2, 64))
    assert same(jinit.flax.init(module, KEY, x, None), module.init(KEY, x, None))
    assert drawn == ["params/Dense_1/kernel"]  # (lecun_normal; Dense_0's normal(0.02) is computed)


def test_stacked_layers_of_jax_initializers_are_drawn_by_the_engine_bitwise(drawn):
    scan = nn.scan(DefaultBlock, variable_axes={"params": 0}, split_rngs={"params": True}, length=3)
    module, x = scan(), jnp.ones((2, 8))
    assert same(jinit.flax.init(module, KEY, x, None), module.init(KEY, x, None))
    assert sorted(drawn) == ["params/Dense_0/kernel", "params/Dense_1/kernel"]  # (3, 8, 8) each


def test_nnx_defaults_are_drawn_and_a_vmapped_stack_is_the_constructors(drawn):
    from flax import nnx

    class Model(nnx.Module):
        def __init__(self, rngs):
            self.head = nnx.Linear(8, 4, rngs=rngs)

            @nnx.split_rngs(splits=3)
            @nnx.vmap(in_axes=(0,), out_axes=0)
            def stack(rngs):
                return nnx.Linear(8, 8, rngs=rngs)

            self.stack = stack(rngs)

    def make():
        return Model(nnx.Rngs(0))

    assert same(nnx.state(jinit.flax.build(make)), nnx.state(make()))
    assert sorted(drawn) == ["head/kernel", "stack/kernel"]  # (the stack's keys batched by the vmap)


def test_a_vmap_of_a_vmap_is_left_to_the_program(drawn):
    """Keys batched twice are not read as JAX's draw (one `vmap` level only): the program computes them."""
    module, x = vmapped(vmapped(DefaultBlock, 0), 0)(), jnp.ones((2, 3, 2, 8))
    assert same(jinit.flax.init(module, KEY, x, None), module.init(KEY, x, None))
    assert drawn == []


@jax.jit
def _normal(key):  # a user's own function, of the name of JAX's sampler, that is not JAX's sampler
    return jax.random.normal(key, (64, 32)) + 1.0


def _twice(key, shape, dtype):  # JAX's draw read twice: no product of a draw
    x = jax.random.normal(key, shape, dtype)
    return x * 0.5 + x


class Scaled(nn.Module):  # a factor computed from the input: not a constant
    @nn.compact
    def __call__(self, x):
        return self.param("w", lambda key, shape: J.normal(1.0)(key, shape) * jnp.mean(x), (64, 32))


@pytest.mark.parametrize(
    "module",
    [
        Param(lambda key, shape, dtype: _normal(key) * 0.5, (64, 32)),
        Param(_twice, (64, 32)),
        Param(J.normal(0.02), (64, 32), jnp.bfloat16),  # JAX draws a narrow float in its own dtype
        Param(lambda key, shape, dtype: jax.random.normal(key, shape, dtype) * jnp.full((1, 32), 2.0, dtype), (64, 32)),
        Param(lambda key, shape, dtype: jax.random.normal(key, shape, dtype) * 0.5 + jnp.ones(shape, dtype), (64, 32)),
        # a mean added to an inexact product: fused into one rounding in a loop, XLA would round it otherwise
        Param(lambda key, shape, dtype: jax.random.truncated_normal(key, -1.5, 2.5, shape, dtype) * 0.1 + 1, (64, 32)),
        Param(lambda key, shape, dtype: 0.25 + 0.3 * jax.random.normal(key, shape, dtype), (64, 32)),
    ],
    ids=[
        "user's _normal",
        "draw read twice",
        "bfloat16",
        "factor not a scalar",
        "sum not of a scalar",
        "product plus mean",
        "mean plus product",
    ],
)
def test_what_is_not_surely_jaxs_draw_is_left_to_the_program(module, drawn):
    assert same(jinit.flax.init(module, KEY), module.init(KEY))
    assert drawn == []


@pytest.mark.parametrize(
    "initializer",
    [
        lambda key, shape, dtype: jax.random.normal(key, shape, dtype) * 0.3 + 0.0,  # (-0.0 + 0.0 is 0.0)
        lambda key, shape, dtype: 0.0 + 0.3 * jax.random.normal(key, shape, dtype),
        lambda key, shape, dtype: jax.random.normal(key, shape, dtype) + 3.7,
        lambda key, shape, dtype: jax.random.uniform(key, shape, dtype, -0.3, 0.7),
        lambda key, shape, dtype: jax.random.truncated_normal(key, -1.5, 2.5, shape, dtype) * 0.1 + 0.0,
    ],
    ids=["product plus zero", "zero plus product", "draw plus mean", "uniform alone", "truncated plus zero"],
)
@pytest.mark.parametrize("shape", SHAPES[:2], ids=str)
def test_a_constant_added_and_a_draw_alone_are_drawn_bitwise(initializer, shape, drawn):
    """A constant scalar added to the product (Haiku's initializers add their mean) or to the draw, and a draw that
    is the parameter itself (Haiku's `RandomUniform`): each operation as the program rounds it."""
    module = Param(initializer, shape)
    assert same(jinit.flax.init(module, KEY), module.init(KEY))
    assert drawn == ["params/w"]


def test_haikus_own_initializers_are_drawn_bitwise(drawn):
    """A Haiku model left with Haiku's initializers (its `Linear` and `Embed` defaults, a normal, a uniform, variance
    scaling), unrolled and in a `hk.layer_stack`: each weight drawn, bitwise ``f.init``'s (but the normal with a
    mean, left to the program)."""
    hk = pytest.importorskip("haiku", reason="dm-haiku is an optional extra: pip install -e '.[haiku]'")
    import jinit.haiku

    def forward(tokens):
        x = hk.Embed(100, 32)(tokens)
        x = hk.Linear(64, w_init=hk.initializers.RandomNormal(0.3))(x)
        x = hk.Linear(32, w_init=hk.initializers.RandomUniform(-0.2, 0.4))(x)
        x = hk.Linear(32, w_init=hk.initializers.RandomNormal(0.3, mean=0.5))(x)  # (left to the program)
        x = hk.Linear(32, w_init=hk.initializers.VarianceScaling(2.0, "fan_in", "uniform"))(x)

        @hk.layer_stack(3)
        def stack(x):
            x = hk.Linear(32, w_init=hk.initializers.VarianceScaling(1.0, "fan_avg", "normal"))(x)
            return hk.Linear(32)(x)  # (Haiku's default: a truncated normal, times 1 / sqrt(fan-in), plus 0)

        return stack(x)

    f, tokens = hk.transform(forward), jnp.zeros((2, 5), jnp.int32)
    assert same(jinit.haiku.init(f, KEY, tokens), f.init(KEY, tokens))
    # (the stack's variance-scaling normal is left to the program: a normal in a compiled body, see below)
    assert sorted(path for path in drawn if not path.endswith("/b")) == sorted(
        ["embed/embeddings", "linear/w", "linear_1/w", "linear_3/w", "__layer_stack_no_per_layer/linear_1/w"]
    )


def test_a_factor_computed_from_an_input_is_left_to_the_program(drawn):
    module, x = Scaled(), jnp.arange(4.0)
    assert same(jinit.flax.init(module, KEY, x), module.init(KEY, x))
    assert drawn == []


def test_the_draws_initializer_is_a_value():
    init = jax_draws.JaxDraw(sampler="_truncated_normal", arguments=(-2.0, 2.0), factor=0.5)
    assert init == jax_draws.JaxDraw(sampler="_truncated_normal", arguments=(-2.0, 2.0), factor=0.5)
    assert init != jax_draws.JaxDraw(sampler="_truncated_normal", arguments=(-2.0, 2.0), factor=-0.5)
    expected = jax.random.truncated_normal(KEY, -2.0, 2.0, (64, 32)) * np.float32(0.5)
    assert np.asarray(init(KEY, (64, 32))).tobytes() == np.asarray(expected).tobytes()
    assert "jax_draw" in repr(init)
    with pytest.raises(ValueError, match="dtype=bfloat16"):
        init(KEY, (64, 32), jnp.bfloat16)


ARITHMETIC = {"sqrt": jnp.sqrt, "neg": jnp.negative, "div": jnp.divide, "mul": jnp.multiply, "add": jnp.add}
ARITHMETIC["sub"] = jnp.subtract


def _operands(rng, dtype, n, arity, positive):
    """`n` tuples of `arity` normal numbers of `dtype`, their magnitudes spread over its whole exponent range."""
    info = np.finfo(dtype)
    exponents = rng.uniform(info.minexp + 1, info.maxexp - 1, (arity, n))
    signs = 1.0 if positive else rng.choice([-1.0, 1.0], (arity, n))
    return (signs * rng.uniform(1, 2, (arity, n)) * np.exp2(exponents)).astype(dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("name", ARITHMETIC)
def test_a_factors_arithmetic_on_the_host_is_xlas_eager_arithmetic(name, dtype):
    """Under a release where the host computes a factor's operations (`host_keys.checked`), each is bitwise what
    JAX's eager operation gives: on scalars as a factor is computed, and elementwise on a hundred thousand operands
    spread over the dtype's range; and wherever XLA:CPU flushes a subnormal to zero, the host leaves it to JAX."""
    if not host_keys.checked():
        pytest.skip(f"jax {jax.__version__} on {jax.default_backend()}: a factor's operations are JAX's")
    function, rng = ARITHMETIC[name], np.random.default_rng(sum(map(ord, name)))
    with jax.enable_x64(dtype == np.float64):
        arity = 1 if name in ("sqrt", "neg") else 2
        (eqn,) = jax.make_jaxpr(function)(*[dtype(1)] * arity).jaxpr.eqns
        scalars = _operands(rng, dtype, 300, arity, positive=name == "sqrt")
        hosted = 0
        for values in zip(*scalars, strict=True):
            ours = jax_draws._in_numpy(eqn, list(values))
            if ours is not None:
                hosted += 1
                assert ours.dtype == np.dtype(dtype)
                assert ours.tobytes() == jax_draws._eager(eqn, list(values)).tobytes(), (name, values)
        assert hosted >= 180  # (a product or quotient of magnitudes drawn so overflows or underflows in a quarter)
        arrays = _operands(rng, dtype, 100_000, arity, positive=name == "sqrt")
        with np.errstate(all="ignore"):
            host = jax_draws.HOST_OPS[name](*arrays)
        xla = np.asarray(function(*arrays))
        info = np.finfo(dtype)
        normal = np.isfinite(host) & ((host == 0) | (np.abs(host) >= info.tiny))
        assert normal.mean() > 0.6 and host[normal].tobytes() == xla[normal].tobytes()
        tiny = np.asarray(info.tiny, dtype)
        if name in ("mul", "div"):  # a subnormal result: XLA:CPU gives zero, and the host does not compute it
            values = [tiny, np.asarray(0.5 if name == "mul" else 2.0, dtype)]
            assert jax_draws._in_numpy(eqn, values) is None and float(jax_draws._eager(eqn, values)) == 0.0


@pytest.mark.parametrize("name", ["lecun_normal", "he_uniform", "fan_avg_normal"])
def test_variance_scalings_factor_is_computed_on_the_host(monkeypatch, name, drawn):
    """Under such a release, a variance scaling's factor (a ``sqrt`` and a ``div``, or a ``mul`` and a ``sqrt``) is
    computed without JAX's eager operations, each compiled on first use: the parameter is still drawn, bitwise."""
    if not host_keys.checked():
        pytest.skip(f"jax {jax.__version__} on {jax.default_backend()}: a factor's operations are JAX's")
    module = Param(INITS[name], (64, 32))
    expected = module.init(KEY)
    monkeypatch.setattr(jax_draws, "_eager", lambda eqn, values: None)
    assert same(jinit.flax.init(module, KEY), expected)
    assert drawn == ["params/w"]
