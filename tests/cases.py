"""The table that drives the tests: one row per initializer configuration.

A new initializer gets the shape/dtype, determinism, jit, value-semantics and (where JAX has it) the
bitwise-equality tests by adding a row here.
"""

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

import jinit


@dataclasses.dataclass(frozen=True)
class Case:
    id: str
    init: jinit.Initializer
    shapes: tuple[tuple[int, ...], ...]
    jax_init: Callable[..., Any] | None = None  # the same initializer in jax.nn.initializers
    complex_ok: bool = False
    random: bool = True


jnn = jax.nn.initializers
DENSE = ((5, 7), (300, 2))
CONV = ((3, 3, 4, 8), (2, 3, 3, 4, 5))
VECTOR = ((5000,),)
LONG = ((2**18 + 4097,),)  # drawn in pieces (see jinit._src.engine.CHUNK)
EVERY = DENSE + CONV[:1] + VECTOR + ((),)
ORTHO = ((5, 7), (7, 5), (3, 3, 4, 8))

CASES = (
    Case("normal", jinit.normal(), EVERY + LONG, jnn.normal(), complex_ok=True),
    Case("normal_stddev", jinit.normal(0.37), EVERY, jnn.normal(0.37), complex_ok=True),
    Case("normal_mean", jinit.normal(0.5, mean=1.5), DENSE + VECTOR),
    Case("random_normal", jinit.random_normal(), DENSE + VECTOR),
    Case("uniform", jinit.uniform(), EVERY + LONG, jnn.uniform()),
    Case("uniform_scale", jinit.uniform(3.0), DENSE + VECTOR, jnn.uniform(3.0)),
    Case("random_uniform", jinit.random_uniform(-0.3, 0.7), DENSE + VECTOR),
    Case("truncated_normal", jinit.truncated_normal(), EVERY + LONG, jnn.truncated_normal()),
    Case(
        "truncated_normal_bounds",
        jinit.truncated_normal(2.0, lower=-1.0, upper=3.0),
        DENSE + VECTOR,
        jnn.truncated_normal(2.0, lower=-1.0, upper=3.0),
    ),
    Case("truncated_normal_mean", jinit.truncated_normal(0.5, mean=-1.0), DENSE),
    *(
        Case(
            f"variance_scaling_{mode}_{dist}",
            jinit.variance_scaling(1.7, mode, dist),
            DENSE[:1] + CONV,
            jnn.variance_scaling(1.7, mode, dist),
            complex_ok=True,
        )
        for mode in ("fan_in", "fan_out", "fan_avg", "fan_geo_avg")
        for dist in ("truncated_normal", "normal", "uniform")
    ),
    Case(
        "variance_scaling_torch_layout",
        jinit.variance_scaling(2.0, "fan_in", "normal", in_axis=1, out_axis=0),
        ((8, 4, 3, 3),),
        jnn.variance_scaling(2.0, "fan_in", "normal", in_axis=1, out_axis=0),
        complex_ok=True,
    ),
    Case(
        "variance_scaling_batch_axis",
        jinit.variance_scaling(1.0, "fan_avg", "uniform", in_axis=(1, 2), out_axis=-1, batch_axis=0),
        ((4, 3, 5, 6),),
        jnn.variance_scaling(1.0, "fan_avg", "uniform", in_axis=(1, 2), out_axis=-1, batch_axis=0),
        complex_ok=True,
    ),
    *(
        Case(name, getattr(jinit, name)(), DENSE + CONV[:1], getattr(jnn, name)(), complex_ok=True)
        for name in ("glorot_uniform", "glorot_normal", "he_uniform", "he_normal", "lecun_uniform", "lecun_normal")
    ),
    Case("orthogonal", jinit.orthogonal(), ORTHO, jnn.orthogonal(), complex_ok=True),
    Case(
        "orthogonal_scaled",
        jinit.orthogonal(1.3, column_axis=0),
        ORTHO,
        jnn.orthogonal(1.3, column_axis=0),
        complex_ok=True,
    ),
    Case(
        "delta_orthogonal",
        jinit.delta_orthogonal(),
        ((3, 4, 5), (3, 3, 4, 4)),
        jnn.delta_orthogonal(),
        complex_ok=True,
    ),
    Case("zeros", jinit.zeros, EVERY, jnn.zeros, complex_ok=True, random=False),
    Case("ones", jinit.ones, EVERY, jnn.ones, complex_ok=True, random=False),
    Case("constant", jinit.constant(0.25), EVERY, jnn.constant(0.25), complex_ok=True, random=False),
    Case("identity", jinit.identity(1.5), DENSE, None, complex_ok=True, random=False),
    Case(
        "keras_variance_scaling",
        jinit.keras_variance_scaling(2.0, "fan_in", "normal", (0,), (1, 2)),
        ((6, 5, 4),),
        complex_ok=True,
    ),
    Case("trunc_normal", jinit.trunc_normal(1.0, 2.0, -1.0, 7.0), DENSE + VECTOR),
    Case("sparse", jinit.sparse(0.3, 0.5), DENSE),
    Case("dirac", jinit.dirac(2), ((4, 2, 3), (6, 3, 3, 3)), random=False),
    Case("torch_kaiming_uniform", jinit.torch_kaiming_uniform(a=5**0.5), ((8, 4, 3, 3),), complex_ok=True),
    Case("torch_bias", jinit.torch_bias(60), DENSE + VECTOR),
    Case("stft", jinit.stft("imag", "hamming", "spectrum", periodic=True), ((8, 1, 5), (16, 2, 9)), random=False),
)

LOW_PRECISION = tuple(
    jnp.dtype(d)
    for d in (
        "bfloat16",
        "float16",
        "float8_e4m3fn",
        "float8_e5m2",
        "float8_e4m3fnuz",
        "float8_e5m2fnuz",
        "float8_e4m3b11fnuz",
        "float8_e3m4",
        "float8_e4m3",
    )
)


def ids(cases):
    return [c.id for c in cases]
