"""Whether parameters were drawn as meant, beyond their moments: `jinit.audit`'s checks of where values came from.

The bugs that moments cannot see:

- **Key reuse.** Two parameters drawn from one key are bitwise equal (same shape and family), or perfectly
  correlated (another scale, or a prefix of a larger draw: threefry's partitionable stream is prefix-stable).
  Keras 3 gives an unseeded initializer a fixed seed when it is built, so one initializer object passed to
  several layers makes them equal: keras-hub's Gemma passes one to its query, key and value projections.
  Found by comparing, for every pair of random parameters, their first `HEAD` elements (an all-pairs product of
  small vectors), then confirming each candidate pair over their whole common prefix on the devices.
- **Not re-initialized.** A random parameter equal (or perfectly correlated) to its counterpart in a reference
  tree: the checkpoint that was meant to be replaced.
- **Replicas that differ.** The copies of one block of a parameter on several devices, or in several processes,
  differ (a per-process seed; keras#21261, jax#21232): each replica's checksum is compared, across processes by
  one all-gather.

False positives: a pair of independent parameters of ``m >= HEAD`` elements of a continuous law has
``|r| >= 1 - TOLERANCE`` with probability at most ``I_{(1 - TOLERANCE)^2}`` of ``r^2 ~ Beta(1/2, (m - 2)/2)``'s
upper tail, below 1e-60 for ``m = 32`` (``tests/test_provenance.py`` computes it, and measures none over many
keys); checksums compare bits, so equal replicas are never flagged.
"""

import math
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

HEAD = 32
"""How many leading elements of each parameter are compared to find candidate pairs (and the fewest elements a
parameter needs to be compared at all)."""

TOLERANCE = 1e-5
"""A pair is perfectly correlated when ``1 - |r| <= max(TOLERANCE, u^2)`` (``u`` the unit roundoff of the
coarser dtype): what rounding leaves of ``y = a x + b``, far beyond what independent values reach."""

_CANDIDATE = 1e-3
"""The looser bound on the heads' correlation for a pair to be confirmed over the whole prefix."""


def _unit(dtype: Any) -> float:
    """The unit roundoff of a floating dtype."""
    return 2.0 ** -(int(jnp.finfo(dtype).nmant) + 1)


def _limit(a: Any, b: Any) -> float:
    """How far from 1 the correlation of a pair of these dtypes may be and still be perfect."""
    return max(TOLERANCE, _unit(a.dtype) ** 2, _unit(b.dtype) ** 2)


VERIFY = 2**16
"""How many leading elements confirm a candidate pair's correlation (plenty: independent values of that many
elements are within `TOLERANCE` of a perfect correlation with probability far below 1e-1000)."""


def _replicated(out: jax.Array, like: jax.Array) -> jax.Array:
    """`out` replicated over `like`'s mesh (so that every process can read it), where `like` has one."""
    mesh = getattr(jax.typeof(like).sharding, "mesh", None)
    if mesh is None or mesh.empty or getattr(mesh, "explicit_axes", ()):
        return out
    return jax.lax.with_sharding_constraint(out, jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec()))


def _prefix(x: jax.Array, k: int) -> jax.Array:
    """The first `k` elements of `x` in row-major order, in float32, replicated: a gather of those elements, with
    no reshape of `x` (which explicit mesh axes refuse) and no copy of the rest."""
    index = tuple(jnp.asarray(i, jnp.int32) for i in np.unravel_index(np.arange(k), x.shape))
    out = (
        jax.sharding.NamedSharding(jax.typeof(x).sharding.mesh, jax.sharding.PartitionSpec()) if _explicit(x) else None
    )
    return _replicated(x.at[index].get(out_sharding=out).astype(jnp.float32), x)


@jax.jit
def _head(x: jax.Array) -> jax.Array:
    return _prefix(x, min(HEAD, x.size))


@jax.jit
def _correlation(x: jax.Array, y: jax.Array) -> jax.Array:
    """The correlation of the first ``min(x.size, y.size, VERIFY)`` elements of `x` and `y` (flattened)."""
    m = min(x.size, y.size, VERIFY)
    a, b = _prefix(x, m), _prefix(y, m)
    a, b = a - jnp.mean(a), b - jnp.mean(b)
    return jnp.sum(a * b) / jnp.sqrt(jnp.sum(a * a) * jnp.sum(b * b))


def _explicit(x: jax.Array) -> bool:
    mesh = getattr(jax.typeof(x).sharding, "mesh", None)
    return mesh is not None and not mesh.empty and bool(getattr(mesh, "explicit_axes", ()))


@jax.jit
def _equal(x: jax.Array, y: jax.Array) -> jax.Array:
    if _explicit(x) and _explicit(y) and jax.typeof(x).sharding.spec != jax.typeof(y).sharding.spec:
        y = jax.sharding.reshard(y, jax.typeof(x).sharding)  # explicit axes compare like with like
    return _replicated(jnp.all(x == y), x)


def _normalized(heads: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The heads centred and scaled to unit length, and which of them vary at all."""
    centred = heads - heads.mean(axis=1, keepdims=True)
    norms = np.linalg.norm(centred, axis=1)
    varies = norms > 0
    return centred / np.where(varies, norms, 1.0)[:, None], varies


def duplicates(params: Sequence[tuple[str, jax.Array]]) -> dict[str, list[str]]:
    """The reasons to flag each parameter of `params` (random ones, of `HEAD` elements or more) that is bitwise
    equal, or perfectly correlated over its common prefix, to another."""
    params = [(path, x) for path, x in params if x.size >= HEAD and _real(x)]
    if len(params) < 2:
        return {}
    heads = np.asarray(jax.device_get([_head(x) for _, x in params]), np.float64)
    units, varies = _normalized(heads)
    close = np.abs(units @ units.T) >= 1 - _CANDIDATE
    reasons: dict[str, list[str]] = {}
    for i, j in zip(*np.nonzero(np.triu(close, 1)), strict=True):
        if not (varies[i] and varies[j]):
            continue
        (p, x), (q, y) = params[i], params[j]
        if x.shape == y.shape and x.dtype == y.dtype and bool(_equal(x, y)):
            reasons.setdefault(p, []).append(f"bitwise equal to {q!r} (one key for both?)")
            reasons.setdefault(q, []).append(f"bitwise equal to {p!r} (one key for both?)")
            continue
        r = float(_correlation(x, y))
        if 1 - abs(r) <= _limit(x, y):
            m = min(x.size, y.size, VERIFY)
            reasons.setdefault(p, []).append(f"correlation {r:+.6f} with {q!r} over {m} elements (one key?)")
            reasons.setdefault(q, []).append(f"correlation {r:+.6f} with {p!r} over {m} elements (one key?)")
    return reasons


def copies(params: Sequence[tuple[str, jax.Array]], reference: dict[str, Any]) -> dict[str, list[str]]:
    """The reasons to flag each random parameter equal, or perfectly correlated, to its reference's array at the
    same path (one of the same shape): it was not re-drawn."""
    reasons: dict[str, list[str]] = {}
    for path, x in params:
        old = reference.get(path)
        if old is None or tuple(old.shape) != tuple(x.shape) or not _real(x) or x.size < 2:
            continue
        old = jnp.asarray(old)
        if old.dtype == x.dtype and bool(_equal(x, old)):
            reasons[path] = ["equal to `reference`: not re-initialized"]
            continue
        r = float(_correlation(x, old))
        if 1 - abs(r) <= _limit(x, old):
            reasons[path] = [f"correlation {r:+.6f} with `reference`: drawn from its key?"]
    return reasons


def _real(x: Any) -> bool:
    return bool(jnp.issubdtype(x.dtype, jnp.floating))


@jax.jit
def checksum(x: jax.Array) -> jax.Array:
    """A position-weighted sum of the bits of `x`, modulo 2**32: equal arrays give equal sums; a change of one
    element always changes it (its weight is odd, so invertible modulo 2**32), and a change of several elements
    (or of their order) with probability about ``1 - 2**-32``."""
    words = _words(x)
    weights = jnp.arange(words.size, dtype=jnp.uint32) * np.uint32(2654435761) * np.uint32(2) + np.uint32(1)
    return jnp.sum(words * weights, dtype=jnp.uint32)


def _words(x: jax.Array) -> jax.Array:
    """The bits of `x` as a flat uint32 vector."""
    if x.dtype == jnp.bool_:
        return jnp.ravel(x).astype(jnp.uint32)
    if jnp.issubdtype(x.dtype, jnp.complexfloating):
        return jnp.concatenate([_words(jnp.real(x)), _words(jnp.imag(x))])
    size = jnp.dtype(x.dtype).itemsize
    if size == 8:
        return jnp.ravel(jax.lax.bitcast_convert_type(x, jnp.uint32))
    unsigned = {1: jnp.uint8, 2: jnp.uint16, 4: jnp.uint32}[size]
    return jnp.ravel(jax.lax.bitcast_convert_type(x, unsigned)).astype(jnp.uint32)


def _blocks(x: jax.Array) -> list[tuple]:
    """The distinct blocks of `x`'s layout, in a fixed order (the same in every process)."""
    indices = x.sharding.devices_indices_map(tuple(x.shape))
    keys = {tuple((s.start, s.stop) for s in index) for index in indices.values()}
    return sorted(keys, key=lambda key: tuple((-1 if a is None else a, -1 if b is None else b) for a, b in key))


def replicas(params: Sequence[tuple[str, Any]]) -> dict[str, list[str]]:
    """The reasons to flag each parameter whose replicas of one block differ: across this process's devices, and
    across processes (one `process_allgather` of every block's checksum, when there are several processes)."""
    reasons: dict[str, list[str]] = {}
    table: list[tuple[int, int]] = []  # per (parameter, block): this process's checksum, and whether it has one
    layout: list[tuple[str, tuple]] = []
    sums: list[tuple[str, tuple, Any]] = []
    several = jax.process_count() > 1
    for path, x in params:
        if not isinstance(x, jax.Array) or x.is_deleted():
            continue
        blocks = _blocks(x)
        if not several and len(x.sharding.device_set) == len(blocks):
            continue  # one copy of each block: nothing to compare (an unsharded parameter, say)
        for shard in x.addressable_shards:
            sums.append((path, tuple((s.start, s.stop) for s in shard.index), checksum(shard.data)))
        layout.extend((path, block) for block in blocks)
    values = jax.device_get([s[2] for s in sums])
    local: dict[tuple[str, tuple], set[int]] = {}
    for (path, block, _), value in zip(sums, values, strict=True):
        local.setdefault((path, block), set()).add(int(value))
    for (path, block), seen in local.items():
        if len(seen) > 1:
            reasons.setdefault(path, []).append(f"its replicas of block {_show(block)} differ across devices")
    if not several:
        return reasons
    from jax.experimental import multihost_utils

    for key in layout:
        seen = local.get(key)
        table.append((min(seen), 1) if seen else (0, 0))
    # (processes, blocks, 2): each process's checksum of each block and whether it holds one (uint32, as JAX's
    # default integers could not hold a checksum above 2**31)
    gathered = np.asarray(multihost_utils.process_allgather(np.asarray(table, np.uint32).reshape(-1, 2)))
    for column, (path, block) in enumerate(layout):
        held = gathered[:, column, 1] == 1
        values = {int(v) for v in gathered[held, column, 0]}
        if len(values) > 1:
            reasons.setdefault(path, []).append(
                f"its replicas of block {_show(block)} differ across processes "
                f"({len(values)} different values among {int(held.sum())} processes)"
            )
    return reasons


def _show(block: tuple) -> str:
    parts = [":" if a is None and b is None else f"{a or 0}:{'' if b is None else b}" for a, b in block]
    return "[" + ", ".join(parts) + "]" if parts else "[]"


def beta_tail(m: int, tolerance: float = TOLERANCE) -> float:
    """An upper bound of ``P(|r| >= 1 - tolerance)`` for the correlation of `m` independent normal pairs:
    ``r^2 ~ Beta(1/2, (m - 2) / 2)``, whose upper tail beyond ``c = (1 - tolerance)^2`` is at most
    ``(1 - c)^((m - 2) / 2) / (((m - 2) / 2) B(1/2, (m - 2) / 2))`` (the density bounded by its value at 1 times
    ``(1 - c)^(b - 1)``, integrated)."""
    b = (m - 2) / 2
    c = (1 - tolerance) ** 2
    log_beta = math.lgamma(0.5) + math.lgamma(b) - math.lgamma(0.5 + b)
    return math.exp(b * math.log1p(-c) - math.log(b) - log_beta - 0.5 * math.log(c))
