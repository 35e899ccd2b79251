"""Resizing an embedding table or an output head to a new vocabulary: the old rows kept bitwise, the new ones drawn
as Hugging Face transformers' ``resize_token_embeddings(..., mean_resizing=True)`` draws them, set to the old rows'
mean, or drawn by an initializer."""

import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.core import Tracer
from jax.sharding import AxisType, Mesh, NamedSharding

from jinit._src import checks, engine
from jinit._src.base import Initializer
from jinit._src.typing import InitializerLike, KeyArray

METHODS = ("mean_resizing", "mean")
EPSILON = 1e-9
"""transformers' factor on the old rows' covariance (``epsilon`` of ``_init_added_embeddings_weights_with_mean``)
and on their standard deviation for a bias (``_init_added_lm_head_bias_with_mean``)."""
HIGHEST = jax.lax.Precision.HIGHEST  # float32 products on every platform (no TF32 or bfloat16 passes)


def resize_rows(
    key: KeyArray | None,
    table: Any,
    new_rows: int,
    method: str | InitializerLike = "mean_resizing",
    *,
    axis: int = 0,
) -> jax.Array:
    """Resizes an embedding table or an output head along its vocabulary axis, keeping the old rows bitwise.

    The first ``min(old, new_rows)`` rows along `axis` are the old ones, unchanged; the added rows are drawn by
    `method`. A *row* is a slice along `axis` (``table[i]`` for an embedding ``(vocab, d)``, ``table[:, i]`` for
    a Flax head kernel ``(d, vocab)`` with ``axis=-1``); with ``n`` old rows flattened to vectors ``x_i`` of
    ``d`` elements, in float32 (float64 for a float64 table):

    - ``"mean_resizing"``: Hugging Face transformers' ``mean_resizing=True``
      (``_init_added_embeddings_weights_with_mean``, which heads share): each new row is drawn from the
      multivariate normal ``N(mu, 1e-9 * S)`` with ``mu = mean_i x_i`` and ``S = (X - mu).T @ (X - mu) / n``
      (divided by ``n``, not ``n - 1``), as ``mu + L @ z`` with ``L`` the Cholesky factor of ``1e-9 * S`` and
      ``z`` standard normal; where ``1e-9 * S`` is not positive definite (its Cholesky factorization fails: fewer
      old rows than ``d + 1``, a constant coordinate), every new row is ``mu``. A 1-D table (a head's bias) follows
      ``_init_added_lm_head_bias_with_mean``: ``N(mu, (1e-9 * s)**2)`` with ``s`` the old entries' standard
      deviation (divided by ``n - 1``); ``mu`` itself for one old entry, whose ``s`` is undefined.
    - ``"mean"``: every new row is ``mu``.
    - an initializer: the new rows are its sample. A jinit initializer whose elements are independent (variance
      scaling, normal, uniform, ...) draws them from its distribution at the *resized* table's shape, so its fans
      are the resized table's (``he_normal`` of an embedding does not see the few new rows as its fan-in); any
      other is called with the new rows' shape and the table's dtype.

    The new rows are cast to the table's dtype, and randomness comes only from `key`. A table sharded by a
    `NamedSharding` comes back with the same sharding, which must then divide the new shape; its old rows are
    bitwise kept, and its new rows are those of the unsharded table up to the rounding of the mean's and the
    covariance's sums, which a sharded table adds in another order.

    Args:
      key: a PRNG key; None when `method` uses none (``"mean"``, a constant initializer, or no rows added).
      table: the array to resize, of rank >= 1: a JAX or NumPy array of a real floating dtype for ``"mean"`` and
        ``"mean_resizing"``.
      new_rows: the new size of `axis`, a non-negative int; below the old size, the table is cut to its first
        `new_rows` rows.
      method: ``"mean_resizing"``, ``"mean"``, or an initializer (any callable ``init(key, shape, dtype)``).
      axis: the vocabulary axis: 0 for an embedding or a PyTorch head ``(vocab, d)``, -1 for a Flax or Keras
        head kernel ``(d, vocab)``.

    Returns:
      The resized table, a JAX array of `table`'s dtype (and sharding).

    Raises:
      TypeError: `table` is not an array or, for the mean methods, not of a real floating dtype; `method` is
        neither a known name nor an initializer; `key` is not a key where one is needed.
      ValueError: `table` is a scalar, `axis` is out of range, `new_rows` is negative, an unknown method name, no
        old rows to average, a sharding that does not divide the new shape, or an initializer that returns
        another shape. Every check runs before any array is allocated.

    Examples:
      >>> import jax, jax.numpy as jnp, jinit
      >>> table = jnp.arange(6.0).reshape(3, 2)
      >>> print(jinit.resize_rows(None, table, 5, "mean"))
      [[0. 1.]
       [2. 3.]
       [4. 5.]
       [2. 3.]
       [2. 3.]]
      >>> head = jinit.resize_rows(jax.random.key(0), table.T, 4, jinit.zeros, axis=-1)
      >>> head.shape, bool((head[:, :3] == table.T).all())
      ((2, 4), True)
    """
    if not isinstance(table, jax.Array | np.ndarray):
        raise TypeError(f"Argument `table` must be a JAX or NumPy array. {checks.received('table', table)}")
    shape = tuple(table.shape)
    if not shape:
        raise ValueError(f"Argument `table` must have rank >= 1 (rows along `axis`). Received: table.shape={shape}")
    axis = checks.normalize_axes("axis", checks.integer("axis", axis), len(shape), shape)[0]
    new_rows = checks.integer("new_rows", new_rows, minimum="nonnegative")
    if isinstance(method, str):
        method = checks.choice("method", method, METHODS)
    elif not callable(method):
        raise TypeError(
            f"Argument `method` must be one of {', '.join(map(repr, METHODS))} or an initializer. "
            f"{checks.received('method', method)}"
        )
    else:
        method = checks.initializer("method", method)
    old, dtype = shape[axis], np.dtype(table.dtype)
    added = new_rows - old
    new_shape = (*shape[:axis], new_rows, *shape[axis + 1 :])
    if isinstance(method, str) and added > 0:
        if not jnp.issubdtype(dtype, np.floating):
            raise TypeError(
                f"Argument `method`={method!r} averages the old rows, which needs a real floating table. "
                f"Received: table.dtype={dtype.name}"
            )
        if old == 0:
            raise ValueError(
                f"Argument `method`={method!r} averages the old rows, but `table` has none along axis {axis}. "
                f"Received: table.shape={shape}"
            )
    sharding = _sharding(table, new_shape)
    if sharding is None or not getattr(sharding.mesh, "explicit_axes", ()):
        return _resized(key, table, method, new_rows, axis, sharding)
    # an explicitly sharded table: computed on the same devices and layout with automatic axes (where XLA
    # chooses how the covariance's sum and the concatenation are laid out), then labelled explicit again
    mesh = sharding.mesh
    devices = np.asarray(mesh.devices)
    auto = NamedSharding(Mesh(devices, mesh.axis_names, axis_types=(AxisType.Auto,) * devices.ndim), sharding.spec)
    resized = _resized(key, jax.device_put(table, auto), method, new_rows, axis, auto)
    return jax.device_put(resized, sharding)


def _resized(key: Any, table: Any, method: Any, new_rows: int, axis: int, sharding: NamedSharding | None) -> jax.Array:
    """`resize_rows` of checked arguments."""
    shape, dtype = tuple(table.shape), np.dtype(table.dtype)
    old = shape[axis]
    added = new_rows - old
    new_shape = (*shape[:axis], new_rows, *shape[axis + 1 :])
    if added <= 0:
        if key is not None:
            checks.key(key)
        return _cut(table, new_rows=new_rows, axis=axis, sharding=sharding)
    block = (*shape[:axis], added, *shape[axis + 1 :])
    if method == "mean_resizing":
        rows = _mean_rows(checks.key(key), table, added=added, axis=axis, sample=True)
    elif method == "mean":
        if key is not None:
            checks.key(key)
        rows = _mean_rows(None, table, added=added, axis=axis, sample=False)
    else:
        rows = _drawn(method, key, block, new_shape, dtype)
    return _join(table, rows, axis=axis, sharding=sharding)


def _sharding(table: Any, new_shape: tuple[int, ...]) -> NamedSharding | None:
    """The table's `NamedSharding`, checked to divide the new shape; None for any other table."""
    if isinstance(table, Tracer) or not isinstance(table, jax.Array):
        return None
    sharding = table.sharding
    if not isinstance(sharding, NamedSharding):
        return None
    try:
        checks.fits("table", sharding, new_shape)
    except ValueError as err:
        raise ValueError(
            f"Argument `new_rows`: the table keeps its sharding, which must divide the new shape {new_shape} ({err})"
        ) from None
    return sharding


def _drawn(init: Any, key: Any, block: tuple[int, ...], new_shape: tuple[int, ...], dtype: np.dtype) -> jax.Array:
    """The new rows of an initializer: an elementwise jinit initializer's law at the resized shape, drawn at the
    block's shape; any other initializer called at the block's shape."""
    if isinstance(init, Initializer) and not init.keyless:
        if key is None and init.seed is not None:
            key = jax.random.key(init.seed)
        key = checks.key(key)
        resolved = checks.resolve_dtype(init, dtype)
        law = init.law(checks.shape(new_shape, resolved), resolved)
        rows = init(key, block, dtype) if law is None else engine.draw(law, key, block, resolved)
    else:
        rows = init(key, block, dtype)
    if tuple(rows.shape) != block:
        raise ValueError(
            f"Argument `method`: the initializer must return the new rows' shape {block}. "
            f"Received: shape={tuple(rows.shape)}, method={checks.show(init)}"
        )
    return rows.astype(dtype)


@functools.partial(jax.jit, static_argnames=("added", "axis", "sample"))
def _mean_rows(key: Any, table: jax.Array, *, added: int, axis: int, sample: bool) -> jax.Array:
    """The `added` new rows of the mean methods (see `resize_rows`), in the table's dtype and layout."""
    rows = jnp.moveaxis(table, axis, 0)
    n, rest = rows.shape[0], rows.shape[1:]
    compute = jnp.promote_types(table.dtype, jnp.float32)
    x = rows.reshape(n, math.prod(rest)).astype(compute)
    mean = jnp.mean(x, axis=0)
    new = jnp.broadcast_to(mean, (added, x.shape[1]))
    if sample and not rest:  # a bias: transformers' `_init_added_lm_head_bias_with_mean`
        if n > 1:
            std = jnp.std(x[:, 0], ddof=1)
            new = mean[None] + EPSILON * std * jax.random.normal(key, (added, 1), compute)
    elif sample:
        centered = x - mean[None]
        covariance = jnp.matmul(centered.T, centered, precision=HIGHEST) / n
        factor = jnp.linalg.cholesky(EPSILON * covariance)
        z = jax.random.normal(key, (added, x.shape[1]), compute)
        drawn = mean[None] + jnp.matmul(z, factor.T, precision=HIGHEST)
        new = jnp.where(jnp.all(jnp.isfinite(factor)), drawn, new)  # not positive definite: the mean
    return jnp.moveaxis(new.astype(table.dtype).reshape((added, *rest)), 0, axis)


def _concatenate(table: Any, rows: jax.Array, axis: int) -> jax.Array:
    return jnp.concatenate((table, rows), axis=axis)


def _slice(table: Any, new_rows: int, axis: int) -> jax.Array:
    return jax.lax.slice_in_dim(table, 0, new_rows, axis=axis)


def _join(table: Any, rows: jax.Array, *, axis: int, sharding: NamedSharding | None) -> jax.Array:
    """The table and its new rows, laid out as the table (one program per shape, axis and sharding)."""
    return jax.jit(_concatenate, static_argnums=2, out_shardings=sharding)(table, rows, axis)


def _cut(table: Any, *, new_rows: int, axis: int, sharding: NamedSharding | None) -> jax.Array:
    """The table's first `new_rows` rows, laid out as the table."""
    return jax.jit(_slice, static_argnums=(1, 2), out_shardings=sharding)(table, new_rows, axis)
