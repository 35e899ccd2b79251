"""The engine: how a distribution becomes an array. Every random elementwise sample of jinit is drawn here.

`draw(distribution, key, shape, dtype, sharding)` picks one of three ways, all giving JAX's values:

- **Stream (eager, on CPU, fewer than `WHOLE` elements).** With JAX's partitionable threefry, element ``i`` of
  a sample depends only on the key and on ``i`` (`jinit._src.threefry`), so a sample of any shape is the flat
  sample of its size, and that flat sample can be cut into pieces drawn at their own stream positions. A
  sample of at most `CHUNK` elements is drawn by one kernel of the next `BUCKETS` size and its first elements
  are handed out as the result, without a copy; a larger one is drawn `CHUNK` elements at a time into one host
  buffer that the result aliases, at most `IN_FLIGHT` pieces alive at once. Kernels are compiled once per
  distribution, dtype and size, never per shape: a new shape
  compiles a kernel only when its size bucket is new to the process (100-200 ms), where JAX compiles per shape.
- **Exact.** One kernel per shape (like JAX): for samples of `WHOLE` elements or more (whose kernel runs
  faster than the stream by more than its compilation costs), when asked (`init_tree`, for a group of
  parameters that large), under a trace (a user's `jit`, `vmap`, `eval_shape`), with a sharding (each device
  generates only its own shard), on other platforms, and for other PRNG implementations or
  ``jax_threefry_partitionable=False`` (then with the user's key, exactly JAX's stream; where its bits come
  from XLA's RngBitGenerator, ``rbg`` and ``unsafe_rbg``, they are made in a loop of their own, `stages`,
  which XLA runs 2.4 times faster than the one loop it fuses for a normal sample). On CPU the kernel is
  one loop that XLA vectorizes, from the counters to the scaled values: no temporary array at all. Elsewhere,
  where threefry is JAX's primitive and writes its bits to memory, a flat sample of more than `LOOP_CHUNK`
  elements is written in place by a loop over pieces, so its temporaries are those of one piece.
- **Operation by operation**, for the one distribution whose bits XLA changes when fused (the complex
  `distributions.ScaledTruncatedNormal`).

Nothing happens behind a call: no threads, no background compilation; what is compiled is JAX's own bounded
cache of jitted functions. Every kernel is compiled by `jinit._src.kernel.jit`: `jax.jit`, with XLA:CPU
options that compile or run it faster where tests show that they give the same values.
"""

import collections
import functools
import itertools
import math
import mmap
import os
from collections.abc import Callable, Iterator
from typing import Any, cast

import jax
import jax.numpy as jnp
import numpy as np
from jax.core import Tracer
from jax.extend import random as jex_random
from jax.sharding import Sharding

from jinit._src import checks, kernel, threefry
from jinit._src.distributions import Distribution

try:  # JAX internals, for `adopt`'s fast path only: a JAX that moved them gets the public `jax.device_put`
    from jax._src import core as jax_core
    from jax._src.interpreters import pxla
except ImportError:  # pragma: no cover - tests/test_packaging.py simulates it
    jax_core = pxla = None

CHUNK = 2**18
"""The largest sample drawn by one kernel on the eager CPU path; larger ones are pieces of this size."""
BUCKETS = tuple(sorted({-(-round(2 ** (k / 4)) // 64) * 64 for k in range(32, 72)} | {CHUNK}))
"""The sizes an eager CPU kernel draws: four per octave from 256 to `CHUNK`, multiples of 64 (so at most 19%
more than asked for, plus 64)."""
IN_FLIGHT = 8
"""Pieces dispatched ahead of the one being copied: enough to keep XLA busy, few enough to hold little memory."""
WHOLE = 2**24
"""An eager sample of this many elements or more is drawn by its own exact kernel on CPU: from there on, that
kernel's speed (about 1.3 times the stream's, with no copy) repays its compilation (about 0.1 s) in one call."""
LOOP_CHUNK = 2**20
"""Off CPU, an exact kernel writes a flat sample of more elements in place, one piece of this size at a time."""


def draw(
    distribution: Distribution,
    key: Any,
    shape: tuple[int, ...],
    dtype: np.dtype,
    sharding: Sharding | None = None,
    *,
    per_shape: bool = False,
) -> jax.Array:
    """A sample of `distribution` of `shape` and `dtype` from `key`, laid out as `sharding` (checked arguments).

    With `per_shape`, the sample is drawn by the exact kernel of its shape, whatever its size: for a caller
    that draws the shape often enough to repay the kernel's compilation.
    """
    n = math.prod(shape)
    if n == 0:
        return jnp.zeros(shape, dtype, out_sharding=cast(Any, sharding))
    if distribution.complex_op_by_op and dtype.kind == "c":
        return lay_out(lambda k, d: opaque(d).sample(k, shape, dtype), sharding, key, distribution)
    own_bits = n < threefry.MAX_DRAW and threefry.partitionable(key) and threefry.verified()  # `positioned`, inline
    if own_bits and sharding is None and n < WHOLE and not per_shape and not isinstance(key, Tracer):
        devices = key.devices() if isinstance(key, jax.Array) else None
        if (jax.default_backend() if devices is None else next(iter(devices)).platform) == "cpu":
            out = _stream(distribution, key, n, shape, dtype) if devices is None or len(devices) == 1 else None
            if out is not None:
                return out
    staged = not own_bits and sharding is None and not isinstance(key, Tracer) and stages(key)
    return _exact(key, distribution, shape=shape, dtype=dtype, sharding=sharding, positioned=own_bits, staged=staged)


SIDE_BY_SIDE = max(1, min(8, os.cpu_count() or 1))
"""How many draws of JAX's own stream (``jax_threefry_partitionable=False``, and implementations whose bits are
not `stages`'s) run in one program, where XLA runs them side by side: JAX's bits for those run on one core per
draw. jinit's positioned kernels, which use every core by themselves, and staged bits, which run as fast one by
one, are not batched so."""


def draw_many(distribution: Distribution, keys: list, shape: tuple[int, ...], dtype: np.dtype) -> list:
    """Samples of `distribution` for each of `keys` (concrete, of JAX's own stream), in one program whose draws
    XLA runs side by side: each is bitwise `draw`'s for its key (the same operations, the same key)."""
    return list(_exact_many(tuple(keys), distribution, shape=shape, dtype=dtype))


@kernel.jit(static_argnames=("shape", "dtype"), older=lambda keys: bit_generated(keys))
def _exact_many(keys, distribution, *, shape, dtype):
    distribution = opaque(distribution)
    return [distribution.sample(key, shape, dtype) for key in keys]


def positioned(key: Any, n: int) -> bool:
    """Whether a sample of `n` elements from `key` can be drawn from `key`'s positioned stream (`origin`), with
    jinit's threefry, giving JAX's values: a key of JAX's partitionable stream, and a JAX that still follows it."""
    return n < threefry.MAX_DRAW and threefry.partitionable(key) and threefry.verified()


# ------------------------------------------------------------------------------------------------ stream


@functools.partial(jax.jit, static_argnames=("size", "dtype"))
def _piece(key, start, distribution, *, size, dtype):
    """`size` elements of the flat sample of `key`, from position `start` (``uint32[hi, lo]``) of its stream."""
    return opaque(distribution).sample(threefry.positioned_key(threefry.key_data(key), start), (size,), dtype)


def opaque(distribution: Distribution) -> Distribution:
    """`distribution` with hyperparameters that XLA cannot fold as constants.

    JAX's initializers compute with their hyperparameters at run time (its samplers are jitted functions of
    them). Under a user's `jax.jit`, a kernel's hyperparameters are constants of the user's program, and XLA
    would evaluate ``erf(lower / sqrt(2))`` and the like while compiling, with its own functions, which round
    differently: the barrier keeps them run-time values, so the sample is the same in every mode.
    """
    return jax.tree.map(jax.lax.optimization_barrier, distribution)


_ORIGIN = threefry.position(0)


def bucket(n: int) -> int:
    """The smallest of `BUCKETS` that holds `n` (<= CHUNK) elements: the size `_stream` draws (inline there)."""
    return BUCKETS[np.searchsorted(BUCKETS, n)]


def _stream(distribution: Distribution, key: Any, n: int, shape: tuple[int, ...], dtype: np.dtype) -> Any:
    """The eager CPU path (see the module docstring); None when the key turns out to be traced."""
    if n <= CHUNK:
        out = _piece(key, _ORIGIN, distribution, size=BUCKETS[np.searchsorted(BUCKETS, n)], dtype=dtype)
        if isinstance(out, Tracer):  # a concrete key closed over by a user's `jit`
            return None
        return adopt(np.asarray(out)[:n].reshape(shape), out)  # the kernel's own buffer, no copy
    # every piece of one size (the last one's surplus is not copied): one kernel to compile
    starts = range(0, n, CHUNK)
    pieces = (_piece(key, threefry.position(start), distribution, size=CHUNK, dtype=dtype) for start in starts)
    first = next(pieces)
    if isinstance(first, Tracer):
        return None
    return _assemble(itertools.chain([first], pieces), n, shape, first)


def _aligned_empty(n: int, dtype: np.dtype) -> np.ndarray:
    """A zeroed host buffer of `n` elements aligned to a page, which JAX's CPU arrays can alias.

    Anonymous memory mapped as XLA's own buffers are, page by page: NumPy asks the kernel for huge pages for
    large arrays, which (with Linux's default ``defrag=madvise``) can stall each first write on memory
    compaction, at times halving the speed of a large draw.
    """
    return np.frombuffer(mmap.mmap(-1, max(1, n * dtype.itemsize)), dtype, count=n)


def _assemble(pieces: Iterator[jax.Array], n: int, shape: tuple[int, ...], like: jax.Array) -> jax.Array:
    """Copies the pieces' first `n` elements into one host buffer, which the result then aliases.

    No compilation, no second copy, and at most `IN_FLIGHT` pieces alive at once.
    """
    pending = collections.deque(itertools.islice(pieces, IN_FLIGHT))
    out, position = _aligned_empty(n, np.dtype(pending[0].dtype)), 0
    while pending:
        piece = np.asarray(pending.popleft())  # a view of the piece's host memory
        pending.extend(itertools.islice(pieces, 1))
        take = min(piece.shape[0], n - position)
        out[position : position + take] = piece[:take]
        position += take
    out.flags.writeable = False
    return adopt(out.reshape(shape), like)


def adopt(host: np.ndarray, like: jax.Array) -> jax.Array:
    """`host` (C-contiguous, 64-byte aligned) as an array on `like`'s CPU device, committed as `like` is, not copied.

    ``jax.device_put(host, device, may_alias=True)`` does this; JAX's own lower-level call
    (`pxla.batched_device_put`) does it several times faster, and is used once `_fast_adopt` has checked that
    it gives what `device_put` gives.
    """
    device = next(iter(like.devices()))
    if pxla is not None and jax_core is not None and _fast_adopt():
        sharding = jax.sharding.SingleDeviceSharding(device)
        return pxla.batched_device_put(
            jax_core.ShapedArray(host.shape, host.dtype), sharding, [host], [device], like.committed
        )
    return jax.device_put(host, device if like.committed else None, may_alias=True)


@functools.cache
def _fast_adopt() -> bool:
    """Whether `pxla.batched_device_put` adopts host memory as the public `jax.device_put` does (checked once)."""
    if pxla is None or jax_core is None:  # a JAX that moved them
        return False
    try:
        host = _aligned_empty(6, np.dtype(np.float32)).reshape(2, 3)
        host[...] = np.arange(6, dtype=np.float32).reshape(2, 3)
        like = jax.device_put(np.float32(0))
        device = next(iter(like.devices()))
        ours = pxla.batched_device_put(
            jax_core.ShapedArray(host.shape, host.dtype),
            jax.sharding.SingleDeviceSharding(device),
            [host],
            [device],
            False,
        )
        public = jax.device_put(host, None, may_alias=True)
        return (
            type(ours) is type(public)
            and (ours.shape, ours.dtype, ours.committed) == (public.shape, public.dtype, public.committed)
            and ours.sharding == public.sharding
            and ours.unsafe_buffer_pointer() == public.unsafe_buffer_pointer() == host.ctypes.data
            and bool((np.asarray(ours) == host).all())
        )
    except Exception:  # any change in JAX's internals: the public call
        return False


# ------------------------------------------------------------------------------------------------- exact


def constrain(x: Any, sharding: Sharding) -> Any:
    """A traced value laid out as `sharding`: resharded over a mesh's explicit axes, constrained over auto ones."""
    explicit = getattr(getattr(sharding, "mesh", None), "explicit_axes", ())
    return jax.sharding.reshard(x, sharding) if explicit else jax.lax.with_sharding_constraint(x, sharding)


def lay_out(sample: Callable[..., jax.Array], sharding: Sharding | None, *args: Any) -> jax.Array:
    """``sample(*args)`` laid out as `sharding`, as `jax.random` does for explicit and auto mesh axes."""
    if sharding is None:
        return sample(*args)
    mesh = getattr(sharding, "mesh", None)
    explicit = getattr(mesh, "explicit_axes", ())
    if explicit:
        return cast(jax.Array, jax.sharding.auto_axes(sample, out_sharding=sharding, axes=explicit)(*args))
    return jax.lax.with_sharding_constraint(sample(*args), sharding)


@kernel.jit(
    static_argnames=("shape", "dtype", "sharding", "positioned", "staged"),
    older=lambda key: bit_generated(key),
)
def _exact(key, distribution, *, shape, dtype, sharding, positioned, staged=False):
    """A sample of exactly `shape`, each device generating its own shard of `sharding`.

    With the positioned stream, the sample is the flat one reshaped; off CPU, a large one is written in place by
    a loop (`looped`). `staged`: JAX's own stream, its bits made in their own loop (`stages`).
    """
    n = math.prod(shape)
    distribution = opaque(distribution)
    if staged:
        return distribution.sample(_staged_key(key), shape, dtype)
    if not positioned:  # JAX's own stream, from the user's key
        return lay_out(lambda k, d: d.sample(k, shape, dtype), sharding, key, distribution)
    if sharding is None and LOOP_CHUNK < n < 2**31 and jax.default_backend() != "cpu":
        return looped(distribution, threefry.key_data(key), n, dtype).reshape(shape)
    if sharding is None:  # a flat sample compiles and runs faster than one of a convolution kernel's rank
        return distribution.sample(origin(key), (n,), dtype).reshape(shape)
    return lay_out(lambda k, d: d.sample(origin(k), shape, dtype), sharding, key, distribution)


def origin(key: jax.Array) -> jax.Array:
    """The positioned key of `key`'s stream from its start: traceable, inside a layout's own context too."""
    return threefry.positioned_key(threefry.key_data(key), jnp.zeros(2, np.uint32))


def looped(distribution: Distribution, data: jax.Array, n: int, dtype: np.dtype) -> jax.Array:
    """The flat sample of `n` elements (LOOP_CHUNK < n < 2**31), generated piece by piece in place.

    Where threefry is JAX's primitive (off CPU), a sample drawn whole keeps about three full-size temporaries
    alive (threefry's two words of bits and the unscaled sample); piece by piece, the temporaries are those of
    one piece. The last piece ends at `n`, overlapping the one before it, whose values it writes again: one
    piece size, so one copy of the sampler to compile. (On CPU, where the whole sample is one fused loop with
    no temporaries, the loop would only be slower: its body runs on one core.)
    """

    def write(i: jax.Array, out: jax.Array) -> jax.Array:
        start = jnp.minimum(i * LOOP_CHUNK, n - LOOP_CHUNK)
        position = jnp.stack([jnp.uint32(0), start.astype(np.uint32)])  # n < 2**31: the high word is 0
        piece = distribution.sample(threefry.positioned_key(data, position), (LOOP_CHUNK,), dtype)
        return jax.lax.dynamic_update_slice(out, piece, (start,))

    return jax.lax.fori_loop(0, -(-n // LOOP_CHUNK), write, jnp.empty((n,), dtype))


# ------------------------------------------------------------------------------------------- staged bits


def stages(key: jax.Array) -> bool:
    """Whether a sample from concrete `key`, of JAX's own stream, is drawn with its bits staged (`_staged_impl`)."""
    try:
        impl = _impl(key)
    except (TypeError, AttributeError):  # raw data not of the default's shape (JAX's error, later); a new JAX
        return False
    return _staged_impl(impl) is not None


def bit_generated(key: Any) -> bool:
    """Whether the bits of concrete `key` (or of any of a sequence of keys, None for none) come from XLA's
    RngBitGenerator (``rbg``, ``unsafe_rbg``): its kernels then compile with XLA:CPU's older emitters, which run
    those bits faster (`jinit._src.kernel`)."""
    if isinstance(key, tuple | list):
        return any(k is not None and bit_generated(k) for k in key)
    try:
        return _bit_generator(_impl(key))
    except (TypeError, AttributeError):  # raw data not of the default's shape (JAX's error, later); a new JAX
        return False


@functools.cache
def _bit_generator(impl: Any) -> bool:
    """Whether implementation `impl` makes its bits with XLA's RngBitGenerator (checked once, on its jaxpr)."""
    try:
        words = np.zeros(impl.key_shape, np.uint32)
        bits = jax.make_jaxpr(lambda data: impl.random_bits(data, 32, (2,)))(words)
    except Exception:  # an implementation this does not understand
        return False
    return any(eqn.primitive.name == "rng_bit_generator" for eqn in bits.jaxpr.eqns)


def _impl(key: Any) -> Any:
    """The PRNG implementation of `key`, typed or raw (then the default one, as `jax.random` takes raw keys).

    JAX internal: a key type's ``_impl`` (whose fields are those `jax.extend.random.define_prng_impl` takes)."""
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        return key.dtype._impl
    return _raw_impl(str(checks.flag("jax_default_prng_impl")), tuple(np.shape(key)[-1:]), np.dtype(key.dtype))


@functools.cache
def _raw_impl(default: str, trailing: tuple[int, ...], dtype: np.dtype) -> Any:
    """The implementation `jax.random` takes raw key data of `trailing` last dimension for, under the default
    implementation `default` (traced once per such triple: nothing is compiled)."""
    return jax.eval_shape(jax.random.wrap_key_data, jax.ShapeDtypeStruct(trailing, dtype)).dtype._impl


def _staged_key(key: Any) -> jax.Array:
    """`key` as a key of `_staged_impl` of its implementation: the same data, so the same stream (traceable)."""
    data = jax.random.key_data(key) if jnp.issubdtype(key.dtype, jax.dtypes.prng_key) else key
    return jax.random.wrap_key_data(data, impl=_staged_impl(_impl(key)))


@functools.cache
def _staged_impl(impl: Any) -> Any:
    """`impl` with its bits made in a loop of their own, or None where that is not faster or not the same.

    JAX's ``rbg`` and ``unsafe_rbg`` make their bits with XLA's RngBitGenerator. On CPU XLA fuses its expansion
    with the arithmetic of a sampler into one loop, which, with `erf_inv` (normal and truncated normal samples),
    runs 2.4 times slower than the two loops apart (measured: 66 against 28 ms for 2**22 normal float32 values).
    The staged implementation is `impl` except that `random_bits` runs inside a conditional whose two branches
    are both `impl`'s: whichever runs, the bits are `impl`'s, and XLA does not fuse across a conditional. Made
    only for an implementation whose bits come from RngBitGenerator (others fuse well), and used only once its
    bits are `impl`'s (checked once per implementation and process, on a small sample): a JAX whose
    implementations changed gets JAX's own draws. The samplers' arithmetic on those bits is JAX's own code in
    both; the tests check every family and dtype bitwise against `jax.random`.
    """
    try:
        if not _bit_generator(impl):
            return None

        def random_bits(data: jax.Array, bit_width: int, shape: tuple[int, ...]) -> jax.Array:
            make = functools.partial(impl.random_bits, bit_width=bit_width, shape=shape)
            return jax.lax.cond(data.reshape(-1)[0] % 2 == 0, make, make, data)  # a boundary, not a choice

        staged = jex_random.define_prng_impl(
            key_shape=impl.key_shape,
            seed=impl.seed,
            split=impl.split,
            random_bits=random_bits,
            fold_in=impl.fold_in,
            name=f"jinit_staged_{impl.name}",
            tag=f"js_{impl.tag}",
        )
        words = np.arange(1, 1 + math.prod(impl.key_shape), dtype=np.uint32).reshape(impl.key_shape)
        plain, ours = _staging_example(words, impl, staged)
        return staged if np.array_equal(plain, ours) else None
    except Exception:  # an implementation or a JAX this does not understand: JAX's own draws
        return None


@kernel.jit(static_argnames=("impl", "staged"))
def _staging_example(words: Any, impl: Any, staged: Any) -> list:
    """Bits from one key's data, of `impl` and of its `staged` twin."""
    return [jax.random.bits(jax.random.wrap_key_data(words, impl=i), (5,)) for i in (impl, staged)]
