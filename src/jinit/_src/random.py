"""Initializers that sample elementwise distributions: normal, uniform and truncated normal.

`normal`, `uniform` and `truncated_normal` have the names, arguments and defaults of `jax.nn.initializers`
(plus a keyword-only `mean`); `random_normal` and `random_uniform` have those of Keras.
"""

import jax

from jinit._src import base, checks, kernels
from jinit._src.typing import DTypeLike


def _normal_sampler(key, shape, dtype, out_sharding, *, stddev, mean) -> jax.Array:
    checks.random_dtype("normal", dtype, complex_ok=True)
    return kernels.sample("normal", key, shape, dtype, (stddev, mean or None), out_sharding)


@base.factory("normal", _normal_sampler)
def normal(stddev: float = 1e-2, dtype: DTypeLike | None = None, *, mean: float = 0.0) -> base.Initializer:
    """Builds an initializer of samples from a normal distribution ``N(mean, stddev**2)``.

    Same as `jax.nn.initializers.normal` (bitwise, for float32, float64 and complex dtypes), with a `mean`.
    A complex sample has independent real and imaginary parts, each of variance ``stddev**2 / 2``.

    Args:
      stddev: the standard deviation, a finite number >= 0.
      dtype: the default dtype of the result; None is JAX's default float type.
      mean: the mean, a finite number.

    Returns:
      An `Initializer`.

    Raises:
      ValueError: `stddev` is negative or not finite, or `mean` is not finite.

    Examples:
      >>> import jax, jinit
      >>> init = jinit.normal(stddev=0.02)
      >>> init
      normal(stddev=0.02, dtype=None, mean=0.0)
      >>> init(jax.random.key(0), (2, 3)).shape
      (2, 3)
    """
    return base.make(
        "normal",
        stddev=checks.number("stddev", stddev, minimum="nonnegative"),
        dtype=checks.dtype("dtype", dtype),
        mean=checks.number("mean", mean),
    )


def _random_normal_sampler(key, shape, dtype, out_sharding, *, mean, stddev) -> jax.Array:
    return _normal_sampler(key, shape, dtype, out_sharding, stddev=stddev, mean=mean)


@base.factory("random_normal", _random_normal_sampler)
def random_normal(mean: float = 0.0, stddev: float = 0.05, dtype: DTypeLike | None = None) -> base.Initializer:
    """Builds an initializer of samples from ``N(mean, stddev**2)``, with Keras's `RandomNormal` defaults.

    It samples exactly as ``normal(stddev, dtype, mean=mean)``.

    Args:
      mean: the mean, a finite number.
      stddev: the standard deviation, a finite number >= 0.
      dtype: the default dtype of the result; None is JAX's default float type.

    Returns:
      An `Initializer`.

    Raises:
      ValueError: `stddev` is negative or not finite, or `mean` is not finite.

    Examples:
      >>> import jinit
      >>> jinit.random_normal()
      random_normal(mean=0.0, stddev=0.05, dtype=None)
    """
    return base.make(
        "random_normal",
        mean=checks.number("mean", mean),
        stddev=checks.number("stddev", stddev, minimum="nonnegative"),
        dtype=checks.dtype("dtype", dtype),
    )


def _uniform_sampler(key, shape, dtype, out_sharding, *, scale) -> jax.Array:
    checks.random_dtype("uniform", dtype, complex_ok=False)
    return kernels.sample("uniform", key, shape, dtype, (scale,), out_sharding)


@base.factory("uniform", _uniform_sampler)
def uniform(scale: float = 1e-2, dtype: DTypeLike | None = None) -> base.Initializer:
    """Builds an initializer of samples uniform in ``[0, scale)``, as `jax.nn.initializers.uniform`.

    Args:
      scale: the upper bound (excluded), a finite number >= 0.
      dtype: the default dtype of the result; None is JAX's default float type.

    Returns:
      An `Initializer`.

    Raises:
      ValueError: `scale` is negative or not finite.

    Examples:
      >>> import jax, jinit
      >>> x = jinit.uniform(1.0)(jax.random.key(0), (1000,))
      >>> bool((x >= 0).all() and (x < 1).all())
      True
    """
    return base.make(
        "uniform", scale=checks.number("scale", scale, minimum="nonnegative"), dtype=checks.dtype("dtype", dtype)
    )


def _random_uniform_sampler(key, shape, dtype, out_sharding, *, minval, maxval) -> jax.Array:
    checks.random_dtype("random_uniform", dtype, complex_ok=False)
    return kernels.sample("random_uniform", key, shape, dtype, (minval, maxval), out_sharding)


@base.factory("random_uniform", _random_uniform_sampler)
def random_uniform(minval: float = -0.05, maxval: float = 0.05, dtype: DTypeLike | None = None) -> base.Initializer:
    """Builds an initializer of samples uniform in ``[minval, maxval)``, with Keras's `RandomUniform` defaults.

    Samples are ``jax.random.uniform(key, shape, dtype, minval, maxval)``.

    Args:
      minval: the lower bound (included), a finite number.
      maxval: the upper bound (excluded), a finite number greater than `minval`.
      dtype: the default dtype of the result; None is JAX's default float type.

    Returns:
      An `Initializer`.

    Raises:
      ValueError: a bound is not finite, or ``minval >= maxval``.

    Examples:
      >>> import jinit
      >>> jinit.random_uniform(-1, 1)
      random_uniform(minval=-1.0, maxval=1.0, dtype=None)
    """
    minval = checks.number("minval", minval)
    maxval = checks.number("maxval", maxval)
    checks.ordered("minval", minval, "maxval", maxval)
    return base.make("random_uniform", minval=minval, maxval=maxval, dtype=checks.dtype("dtype", dtype))


def _truncated_normal_sampler(key, shape, dtype, out_sharding, *, stddev, lower, upper, mean) -> jax.Array:
    checks.random_dtype("truncated_normal", dtype, complex_ok=False)
    return kernels.sample("truncated_normal", key, shape, dtype, (stddev, mean or None, lower, upper), out_sharding)


@base.factory("truncated_normal", _truncated_normal_sampler)
def truncated_normal(
    stddev: float = 1e-2,
    dtype: DTypeLike | None = None,
    lower: float = -2.0,
    upper: float = 2.0,
    *,
    mean: float = 0.0,
) -> base.Initializer:
    """Builds an initializer of ``mean + stddev * z``, with ``z`` standard normal truncated to ``[lower, upper]``.

    As `jax.nn.initializers.truncated_normal`, `lower` and `upper` are in units of `stddev` and `stddev` is
    that of the normal before truncation (the samples' standard deviation is smaller: about ``0.88 * stddev``
    for the default bounds). Samples never leave ``[mean + lower * stddev, mean + upper * stddev]``, in any
    dtype.

    Args:
      stddev: the standard deviation of the untruncated normal, a finite number >= 0.
      dtype: the default dtype of the result; None is JAX's default float type.
      lower: the lower bound, in standard deviations from the mean.
      upper: the upper bound, in standard deviations from the mean, greater than `lower`.
      mean: the mean of the untruncated normal.

    Returns:
      An `Initializer`.

    Raises:
      ValueError: a number is not finite, `stddev` is negative or ``lower >= upper``.

    Examples:
      >>> import jax, jinit
      >>> x = jinit.truncated_normal(1.0)(jax.random.key(0), (10000,))
      >>> bool(abs(x).max() <= 2.0)
      True
    """
    stddev = checks.number("stddev", stddev, minimum="nonnegative")
    lower = checks.number("lower", lower)
    upper = checks.number("upper", upper)
    checks.ordered("lower", lower, "upper", upper)
    return base.make(
        "truncated_normal",
        stddev=stddev,
        dtype=checks.dtype("dtype", dtype),
        lower=lower,
        upper=upper,
        mean=checks.number("mean", mean),
    )
