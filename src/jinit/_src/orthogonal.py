"""Orthogonal initializers: orthogonal matrices, and delta-orthogonal convolution kernels."""

import math

import jax
import jax.numpy as jnp

from jinit._src import base, checks, kernels
from jinit._src.typing import DTypeLike


def _orthogonal_sampler(key, shape, dtype, out_sharding, *, scale, column_axis) -> jax.Array:
    if len(shape) < 2:
        raise ValueError(f"`orthogonal` needs a shape of rank >= 2. Received: shape={shape}")
    checks.normalize_axes("column_axis", column_axis, len(shape), shape)
    return _sample(kernels.orthogonal_kernel, "orthogonal", key, shape, dtype, out_sharding, scale, column_axis)


def _sample(kernel, name, key, shape, dtype, out_sharding, scale, column_axis) -> jax.Array:
    """Checks the dtype, then runs `kernel` (or returns an empty array for a zero-size shape)."""
    checks.random_dtype(name, dtype, complex_ok=True)
    if math.prod(shape) == 0:
        return jnp.zeros(shape, dtype, out_sharding=out_sharding)
    return kernel(key, scale, shape=shape, column_axis=column_axis, dtype=dtype, out_sharding=out_sharding)


@base.factory("orthogonal", _orthogonal_sampler)
def orthogonal(scale: float = 1.0, column_axis: int = -1, dtype: DTypeLike | None = None) -> base.Initializer:
    """Builds an initializer of (semi-)orthogonal matrices times `scale`, uniform over the orthogonal group.

    As `jax.nn.initializers.orthogonal` (bitwise, for float32, float64 and complex dtypes): the shape is
    seen as a matrix whose columns run along `column_axis` and whose rows are all other axes flattened; a
    normal matrix of that shape is factored by QR and ``Q`` is multiplied by the signs of ``R``'s diagonal
    (which makes it Haar-distributed). With more rows than columns the columns are orthonormal, otherwise
    the rows are.

    Args:
      scale: the multiplier, a finite number >= 0.
      column_axis: the axis whose entries are the matrix's columns.
      dtype: the default dtype of the result; None is JAX's default float type.

    Returns:
      An `Initializer` for shapes of rank >= 2.

    Raises:
      ValueError: `scale` is negative or not finite; when called, the shape has rank < 2 or `column_axis`
        is out of range.

    Examples:
      >>> import jax, jax.numpy as jnp, jinit
      >>> q = jinit.orthogonal()(jax.random.key(0), (4, 3))
      >>> bool(jnp.allclose(q.T @ q, jnp.eye(3), atol=1e-5))
      True
    """
    return base.make(
        "orthogonal",
        scale=checks.number("scale", scale, minimum="nonnegative"),
        column_axis=checks.integer("column_axis", column_axis),
        dtype=checks.dtype("dtype", dtype),
    )


def _delta_orthogonal_sampler(key, shape, dtype, out_sharding, *, scale, column_axis) -> jax.Array:
    if len(shape) not in (3, 4, 5):
        raise ValueError(f"`delta_orthogonal` needs a shape of rank 3, 4 or 5. Received: shape={shape}")
    if shape[-1] < shape[-2]:
        raise ValueError(
            "`delta_orthogonal` needs at least as many output channels (last axis) as input channels "
            f"(second to last). Received: shape={shape}"
        )
    return _sample(
        kernels.delta_orthogonal_kernel, "delta_orthogonal", key, shape, dtype, out_sharding, scale, column_axis
    )


@base.factory("delta_orthogonal", _delta_orthogonal_sampler)
def delta_orthogonal(scale: float = 1.0, column_axis: int = -1, dtype: DTypeLike | None = None) -> base.Initializer:
    """Builds an initializer of convolution kernels that are orthogonal at their centre and zero elsewhere.

    As `jax.nn.initializers.delta_orthogonal` (Xiao et al., 2018): for a kernel of shape
    ``(*spatial, in, out)`` with ``in <= out``, the centre tap ``(k - 1) // 2`` of every spatial axis holds
    ``orthogonal(scale, column_axis)`` of shape ``(in, out)``.

    Args:
      scale: the multiplier, a finite number >= 0.
      column_axis: the column axis of the centre matrix: -1, -2, 0 or 1.
      dtype: the default dtype of the result; None is JAX's default float type.

    Returns:
      An `Initializer` for shapes of rank 3, 4 or 5.

    Raises:
      ValueError: `scale` is negative or not finite, or `column_axis` is not an axis of a matrix; when
        called, the rank is not 3-5 or there are fewer output than input channels.

    Examples:
      >>> import jax, jinit
      >>> w = jinit.delta_orthogonal()(jax.random.key(0), (3, 3, 4, 4))
      >>> bool((w[0] == 0).all()), bool((w[1, 1] != 0).any())
      (True, True)
    """
    column_axis = checks.integer("column_axis", column_axis)
    checks.normalize_axes("column_axis", column_axis, 2)  # an axis of the matrix at the centre
    return base.make(
        "delta_orthogonal",
        scale=checks.number("scale", scale, minimum="nonnegative"),
        column_axis=column_axis,
        dtype=checks.dtype("dtype", dtype),
    )
