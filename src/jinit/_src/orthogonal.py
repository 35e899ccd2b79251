"""Orthogonal initializers: orthogonal matrices, and delta-orthogonal convolution kernels."""

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np

from jinit._src import checks, engine, kernel
from jinit._src.base import Initializer
from jinit._src.distributions import compute_dtype
from jinit._src.typing import DTypeLike


def normal_matrix(key: jax.Array, shape: tuple[int, ...], column_axis: int, dtype: np.dtype) -> jax.Array:
    """The normal matrix that `orthogonal` factors, as `jax.random.orthogonal` draws it: tall, in `dtype`."""
    n_cols = shape[column_axis]
    n_rows = math.prod(shape) // n_cols
    return jax.random.normal(key, (max(n_rows, n_cols), min(n_rows, n_cols)), dtype)


def _orthogonal(key, scale, shape, column_axis, dtype, positioned):
    """An orthogonal matrix from the QR of a normal one, reshaped, as `jax.nn.initializers.orthogonal`.

    Q's columns are multiplied by the signs of R's diagonal, which makes the result uniform over the orthogonal
    group (Haar measure), as `jax.random.orthogonal` does; a wide matrix is the transpose of a tall one. The
    normal matrix is drawn from the start of the key's positioned stream when `positioned` (the same values,
    from jinit's faster threefry: `engine.positioned`).
    """
    ct = compute_dtype(dtype)
    n_cols = shape[column_axis]
    n_rows = math.prod(shape) // n_cols
    q, r = jnp.linalg.qr(normal_matrix(engine.origin(key) if positioned else key, shape, column_axis, ct))
    q = q * jnp.expand_dims(jnp.sign(jnp.linalg.diagonal(r)), -2)
    q = q.mT if n_rows < n_cols else q
    q = jnp.reshape(q, (*np.delete(shape, column_axis), n_cols))
    q = jnp.moveaxis(q, -1, column_axis)
    return (jnp.asarray(scale, ct) * q).astype(dtype)


_STATIC = ("shape", "column_axis", "dtype", "sharding", "positioned")


@kernel.jit(static_argnames=_STATIC, older=engine.bit_generated)
def _orthogonal_kernel(key, scale, *, shape, column_axis, dtype, sharding, positioned):
    def draw(k, s):
        return _orthogonal(k, s, shape, column_axis, dtype, positioned)

    return engine.lay_out(draw, sharding, key, scale)


@kernel.jit(static_argnames=_STATIC, older=engine.bit_generated)
def _delta_orthogonal_kernel(key, scale, *, shape, column_axis, dtype, sharding, positioned):
    """An orthogonal matrix at the centre of a convolution kernel, zeros elsewhere."""

    def draw(k, s):
        matrix = _orthogonal(k, s, shape[-2:], column_axis, dtype, positioned)
        return jnp.zeros(shape, dtype).at[tuple((size - 1) // 2 for size in shape[:-2])].set(matrix)

    return engine.lay_out(draw, sharding, key, scale)


@dataclasses.dataclass(frozen=True, repr=False, eq=False)
class _Orthogonal(Initializer):
    """The fields and their checks that `orthogonal` and `delta_orthogonal` share."""

    scale: float = 1.0
    column_axis: int = -1
    dtype: str | None = None
    dtypes = "inexact"
    lapack = True

    def __post_init__(self) -> None:
        self._set(
            scale=checks.number("scale", self.scale, minimum="nonnegative"),
            column_axis=checks.integer("column_axis", self.column_axis),
            dtype=checks.dtype("dtype", self.dtype),
        )

    def magnitude(self):  # the entries of an orthonormal matrix are at most 1
        return self.scale


@dataclasses.dataclass(frozen=True, repr=False, eq=False)
class Orthogonal(_Orthogonal, name="orthogonal"):
    """`orthogonal`'s value: (semi-)orthogonal matrices times `scale`, Haar-distributed."""

    def sample(self, key, shape, dtype, sharding):
        if len(shape) < 2:
            raise ValueError(f"`orthogonal` needs a shape of rank >= 2. Received: shape={shape}")
        checks.normalize_axes("column_axis", self.column_axis, len(shape), shape)
        if math.prod(shape) == 0:
            return jnp.zeros(shape, dtype, out_sharding=sharding)
        return _orthogonal_kernel(
            key,
            self.scale,
            shape=shape,
            column_axis=self.column_axis,
            dtype=dtype,
            sharding=sharding,
            positioned=engine.positioned(key, math.prod(shape)),
        )


def orthogonal(scale: float = 1.0, column_axis: int = -1, dtype: DTypeLike | None = None) -> Initializer:
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
    return Orthogonal(scale, column_axis, dtype)


@dataclasses.dataclass(frozen=True, repr=False, eq=False)
class DeltaOrthogonal(_Orthogonal, name="delta_orthogonal"):
    """`delta_orthogonal`'s value: an orthogonal matrix at the centre of a convolution kernel."""

    def __post_init__(self) -> None:
        super().__post_init__()
        checks.normalize_axes("column_axis", self.column_axis, 2)  # an axis of the matrix at the centre

    def sample(self, key, shape, dtype, sharding):
        if len(shape) not in (3, 4, 5):
            raise ValueError(f"`delta_orthogonal` needs a shape of rank 3, 4 or 5. Received: shape={shape}")
        if shape[-1] < shape[-2]:
            raise ValueError(
                "`delta_orthogonal` needs at least as many output channels (last axis) as input channels "
                f"(second to last). Received: shape={shape}"
            )
        if math.prod(shape) == 0:
            return jnp.zeros(shape, dtype, out_sharding=sharding)
        return _delta_orthogonal_kernel(
            key,
            self.scale,
            shape=shape,
            column_axis=self.column_axis,
            dtype=dtype,
            sharding=sharding,
            positioned=engine.positioned(key, math.prod(shape[-2:])),
        )


def delta_orthogonal(scale: float = 1.0, column_axis: int = -1, dtype: DTypeLike | None = None) -> Initializer:
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
    return DeltaOrthogonal(scale, column_axis, dtype)
