"""JAX's partitionable threefry stream, counted from any position: the only source of jinit's random bits.

With ``jax_threefry_partitionable`` (JAX's default), element ``i`` (row-major) of ``jax.random.bits(key, shape)``
is ``threefry2x32(key, (hi(i), lo(i)))``, its two output words xored: it depends on the key and on ``i`` only.
So a sample can be drawn in pieces, each from its position in the stream, with JAX's values.

`POSITIONED` is a PRNG implementation (`jax.extend.random.define_prng_impl`) whose key is threefry's two words
and a 64-bit stream position. `jax.random.normal`, `uniform`, `truncated_normal`, `split` and `orthogonal` run
unchanged on its keys, so jinit's distributions are JAX's own code, only fed from a position.

On CPU the hash itself is twenty unrolled rounds of `lax` integer operations, which XLA fuses and vectorizes
(JAX lowers its `threefry2x32` primitive on CPU to a rolled loop, several times slower). Elsewhere it is JAX's
primitive. A batch of keys' bits (JAX lowers a draw from a batch of keys by vmapping the implementation's bits)
are written on the batch's arrays by a `jax.custom_batching.custom_vmap` rule, the same operations, rather than
batched operation by operation, which was half of a rows program's lowering. The rows (`jinit._src.rows`) hash
their words themselves (`rows_words`) and hand them to JAX's samplers as keys of `drawn`, whose bits are the
words. Threefry is an exactly specified integer function, so the bits are the same either way; `verified`
checks it once per process against `jax.random.bits` before the stream is used (under a release the tests
checked, by that check), and jinit falls back to drawing with the user's own key (JAX's code, exactly) if it ever
differs.
"""

import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import custom_batching, lax
from jax.extend import random as jex_random

ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))
PARITY = np.uint32(0x1BD11BDA)
MAX_DRAW = 2**32
"""The most elements one `POSITIONED` draw may have: its offsets within the draw are 32-bit."""


def _rotate_left(x: jax.Array, d: int) -> jax.Array:
    return lax.bitwise_or(lax.shift_left(x, np.uint32(d)), lax.shift_right_logical(x, np.uint32(32 - d)))


def hash_unrolled(k1: jax.Array, k2: jax.Array, x0: jax.Array, x1: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Threefry-2x32 (20 rounds, Salmon et al. 2011) of the counters ``(x0, x1)`` under the key ``(k1, k2)``.

    The rounds are written out, so XLA fuses them into one elementwise loop that it vectorizes. They are `lax`'s
    operations on ``uint32`` arrays (the keys scalars or of the counters' shape), not `jax.numpy`'s, whose
    wrappers made tracing them, under the `vmap` by which JAX lowers a batch of draws, most of a kernel's
    lowering time.
    """
    ks = (k1, k2, lax.bitwise_xor(lax.bitwise_xor(k1, k2), PARITY))
    x0, x1 = lax.add(x0, ks[0]), lax.add(x1, ks[1])
    for group in range(5):
        for d in ROTATIONS[group % 2]:
            x0 = lax.add(x0, x1)
            x1 = lax.bitwise_xor(_rotate_left(x1, d), x0)
        x0 = lax.add(x0, ks[(group + 1) % 3])
        x1 = lax.add(lax.add(x1, ks[(group + 2) % 3]), np.uint32(group + 1))
    return x0, x1


def _hash(k1: jax.Array, k2: jax.Array, x0: jax.Array, x1: jax.Array) -> tuple[jax.Array, jax.Array]:
    """The hash as the current backend computes it fastest (see the module docstring)."""
    if jax.default_backend() == "cpu":
        return hash_unrolled(k1, k2, x0, x1)
    out = jex_random.threefry2x32_p.bind(k1, k2, x0, x1)
    return out[0], out[1]


def positioned_bits(data: jax.Array, bit_width: int, shape: tuple[int, ...]) -> jax.Array:
    """The bits of `jax.random.bits` for the elements ``position + i`` of a large sample (`POSITIONED`'s).

    `data` is ``uint32[k1, k2, position_hi, position_lo]``; element ``i`` of `shape` (row-major) gets the bits
    that ``jax.random.bits(key, ...)`` gives element ``position + i`` of a sample drawn from ``(k1, k2)``.
    """
    return _batchable(bit_width, tuple(shape), True)(data)


def row_bits(data: jax.Array, bit_width: int, shape: tuple[int, ...]) -> jax.Array:
    """`positioned_bits` of a draw that does not reach past a multiple of ``2**32`` (``position_lo + size <=
    2**32``), as a row of `jinit._src.rows` never does: the high word is the position's own, with no carry to
    compute, which runs a uniform sample a fifth faster (`ROW`'s bits)."""
    return _batchable(bit_width, tuple(shape), False)(data)


@functools.lru_cache(maxsize=256)
def _batchable(bit_width: int, shape: tuple[int, ...], carry: bool) -> Any:
    """`_bits` of one key's data, whose `vmap` is `_bits` of the batch's data (`jax.custom_batching.custom_vmap`).

    JAX lowers a draw from a batch of keys by tracing the implementation's bits under `vmap`, once per draw in a
    program (a plan's kernel, each distribution of the rows): batching each of the hash's hundred-odd operations
    took half of that; the rule writes the same operations on the batch's arrays (the same integers). (Kept per
    width, shape and carry, a bounded number, so that a shape drawn again is the same function.)
    """

    # (jitted: `custom_vmap` traces the function for one key at each call, also where the rule then draws a
    # batch; as a `jit`, that trace is made once per width, shape and carry)
    one = jax.jit(functools.partial(_bits, bit_width=bit_width, shape=shape, carry=carry))

    @custom_batching.custom_vmap
    def bits(data: jax.Array) -> jax.Array:
        return one(data)

    @bits.def_vmap
    def _(axis_size: int, in_batched: list, data: jax.Array) -> tuple[jax.Array, bool]:
        del axis_size
        if not in_batched[0]:
            return bits(data), False
        return _bits(data, bit_width, shape, carry=carry), True  # (the batch's axis leads, as `custom_vmap` puts it)

    return bits


def _bits(data: jax.Array, bit_width: int, shape: tuple[int, ...], *, carry: bool) -> jax.Array:
    """The bits of `shape` for each key of ``data[..., 4]``, laid out as ``(*data.shape[:-1], *shape)``."""
    n = math.prod(shape)
    assert n < MAX_DRAW, n  # the engine draws larger samples in pieces, or with JAX's own stream
    batch = data.shape[:-1]
    full = (*batch, *shape)

    def word(i: int) -> jax.Array:  # a key's word for each of its elements (for one key, a scalar)
        w = lax.index_in_dim(data, i, axis=len(batch), keepdims=False)
        return lax.broadcast_in_dim(w, full, tuple(range(len(batch)))) if batch else w

    k1, k2, hi, lo = (word(i) for i in range(4))
    offsets = lax.iota(np.uint32, n).reshape(shape)
    count_lo = lax.add(lo, lax.broadcast_in_dim(offsets, full, tuple(range(len(batch), len(full)))))
    # the carry into the high word, where a draw may reach past a multiple of 2**32
    if carry:
        count_hi = lax.add(hi, lax.convert_element_type(lax.lt(count_lo, lo), np.uint32))
    else:
        count_hi = hi if batch else lax.broadcast_in_dim(hi, full, ())
    bits1, bits2 = _hash(k1, k2, count_hi, count_lo)
    if bit_width == 64:
        return (bits1.astype(np.uint64) << np.uint64(32)) | bits2.astype(np.uint64)
    bits = lax.bitwise_xor(bits1, bits2)
    return bits if bit_width == 32 else bits.astype(np.dtype(f"uint{bit_width}"))


def _split(data: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    keys = jex_random.threefry_prng_impl.split(data[:2], tuple(shape))
    return jnp.concatenate([keys, jnp.broadcast_to(data[2:], (*shape, 2))], axis=-1)


def _fold_in(data: jax.Array, value: Any) -> jax.Array:
    return jnp.concatenate([jex_random.threefry_prng_impl.fold_in(data[:2], value), data[2:]])


def _seed(seed: jax.Array) -> jax.Array:
    return jnp.concatenate([jex_random.threefry_prng_impl.seed(seed), jnp.zeros(2, np.uint32)])


def _positioned_impl(random_bits: Any, name: str, tag: str) -> Any:
    """A PRNG implementation whose key is threefry's two words and a stream position, drawing by `random_bits`."""
    return jex_random.define_prng_impl(
        key_shape=(4,), seed=_seed, split=_split, random_bits=random_bits, fold_in=_fold_in, name=name, tag=tag
    )


POSITIONED = _positioned_impl(positioned_bits, "jinit_positioned_threefry2x32", "jpt")
ROW = _positioned_impl(row_bits, "jinit_row_threefry2x32", "jrt")
"""`POSITIONED` for draws that reach no multiple of ``2**32`` past their position (`row_bits`)."""


def rows_words(data: jax.Array, width: int) -> jax.Array:
    """The 32-bit words of ``[rows, width]`` elements, each row drawn from its `ROW` key data (``data[rows, 4]``):
    row ``r`` is ``jax.random.bits(wrap_key_data(data[r], impl=ROW), (width,))``, hashed without `vmap`."""
    return _bits(data, 32, (width,), carry=False)


class NotOneRow(Exception):
    """A sampler read a `drawn` key other than as the bits of one draw of its row's size: the caller draws from
    the row's own key instead (`jinit._src.rows`). Raised where JAX lowers the sampler's use of the key."""


@functools.cache
def drawn(width: int) -> Any:
    """A PRNG implementation whose key is the 32-bit words of a row of `width` elements (`rows_words`), already
    hashed: ``jax.random.bits`` of it, in 8, 16 or 32 bits and any shape of `width` elements, gives those words
    (the narrower ones truncated, as `positioned_bits` truncates them), which is what the row's own `ROW` key
    gives, bit for bit, partitionable threefry being reshape-stable. Anything else (64-bit words, another size,
    a split or fold-in) raises `NotOneRow`.

    So JAX's own samplers (`jax.random.uniform`, ``normal``, ``truncated_normal``) run unchanged on words hashed
    elsewhere: one hash for the rows of several distributions of a width, whose lowering, like a sampler's, is
    the rows' program's. (Kept per width: the rows' are the five powers of two from 64 to 1024.)
    """

    def random_bits(data: jax.Array, bit_width: int, shape: tuple[int, ...]) -> jax.Array:
        if bit_width > 32 or math.prod(shape) != width:
            raise NotOneRow(f"{bit_width}-bit words of shape {tuple(shape)} from a row of {width}")
        words = data.reshape(shape)
        return words if bit_width == 32 else words.astype(np.dtype(f"uint{bit_width}"))

    def other(*args: Any) -> Any:
        raise NotOneRow("a key derived from a row's words")

    return jex_random.define_prng_impl(
        key_shape=(width,), seed=other, split=other, random_bits=random_bits, fold_in=other,
        name=f"jinit_drawn_words_{width}", tag=f"jdw{width}",
    )  # fmt: skip


def positioned_key(key_data: jax.Array, position: jax.Array) -> jax.Array:
    """A `POSITIONED` key: threefry's ``uint32[2]`` key data and a stream position ``uint32[hi, lo]``."""
    return jax.random.wrap_key_data(jnp.concatenate([key_data, position]), impl=POSITIONED)


def key_data(key: Any) -> Any:
    """A threefry key's ``uint32[2]`` data, from a typed or a legacy key."""
    return jax.random.key_data(key) if jnp.issubdtype(key.dtype, jax.dtypes.prng_key) else key


def position(start: int) -> np.ndarray:
    """A stream position as the ``uint32[hi, lo]`` that `positioned_key` takes."""
    return np.array([start >> 32, start & 0xFFFFFFFF], np.uint32)


def partitionable(key: Any) -> bool:
    """Whether `key` draws JAX's partitionable threefry stream, which `POSITIONED` reproduces at any position."""
    # getattr: JAX defines its flags at run time, where type checkers do not see them
    if not getattr(jax.config, "jax_threefry_partitionable"):  # noqa: B009
        return False
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        return jax.random.key_impl(key) == "threefry2x32"
    return getattr(jax.config, "jax_default_prng_impl") == "threefry2x32"  # noqa: B009


def reference_bits(key_data: np.ndarray, start: int, n: int) -> np.ndarray:
    """The partitionable stream's 32-bit words for positions ``start .. start + n - 1``, in NumPy.

    The specification `positioned_bits` implements: the counter of position ``p`` is ``(p >> 32, p & 0xFFFFFFFF)``
    and its word is threefry's two outputs xored.
    """
    k1, k2 = (np.full(n, w, np.uint32) for w in np.asarray(key_data, np.uint32))
    positions = np.arange(start, start + n, dtype=np.uint64)
    x0, x1 = hash_host(k1, k2, (positions >> np.uint64(32)).astype(np.uint32), positions.astype(np.uint32))
    return x0 ^ x1


def hash_host(k1: np.ndarray, k2: np.ndarray, x0: np.ndarray, x1: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`hash_unrolled` in NumPy, on ``uint32`` arrays of one shape: the specification of JAX's ``threefry2x32``."""
    k1, k2, x0, x1 = (np.asarray(a, np.uint32) for a in (k1, k2, x0, x1))
    ks = (k1, k2, k1 ^ k2 ^ PARITY)
    x0, x1 = x0 + ks[0], x1 + ks[1]
    for group in range(5):
        for d in ROTATIONS[group % 2]:
            x0 = x0 + x1
            x1 = ((x1 << np.uint32(d)) | (x1 >> np.uint32(32 - d))) ^ x0
        x0 = x0 + ks[(group + 1) % 3]
        x1 = x1 + ks[(group + 2) % 3] + np.uint32(group + 1)
    return x0, x1


@functools.cache
def verified() -> bool:
    """Whether `jax.random.bits` still follows the stream that `POSITIONED` reproduces (checked once per process).

    `positioned_bits` implements JAX's partitionable threefry as specified by `reference_bits` (the tests check
    it bitwise against `jax.random`); here JAX's own bits for a small sample are checked against that
    specification, so that a JAX whose stream has changed makes jinit fall back to JAX's own code, never differ.
    The sample is drawn by the program that checks `jinit._src.host_keys` (one compilation for both checks).
    Under a release `jinit._src.host_keys.CHECKED` lists, on CPU, JAX's bits are known to be the specification's
    (tests/test_engine.py checks them there) and nothing is compiled.
    """
    from jinit._src import host_keys  # (it builds on this module)

    if host_keys.checked():  # a release whose bits tests/test_engine.py checked against the specification, on CPU
        return True
    impl = jex_random.threefry_prng_impl
    data = host_keys.example_words(impl)
    bits = host_keys.reference(impl, True)[-1]
    return bool(np.array_equal(bits.reshape(-1), reference_bits(data, 0, 8)))
