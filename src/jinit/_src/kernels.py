"""The jit-compiled samplers behind every random initializer.

Each sample is computed by `_draw`, with the same `jax.random` calls and the same arithmetic, in the same
order, as `jax.nn.initializers`, so float32, float64 and complex results are bitwise identical to JAX's.
Low-precision floating types (bfloat16, float16, float8, ...) are sampled in float32 and cast once at the end,
then clamped into the distribution's bounds, so they are unbiased and stay in range.

`_draw` runs in one of two kernels, both compiled with shape and dtype static and hyperparameters traced:

- `_exact_kernel` generates exactly the requested shape. It serves traced keys (inside a user's `jit` or
  `vmap`), `out_sharding`, other PRNG implementations and `jax_threefry_partitionable=False`. A flat sample
  of more than `LOOP_CHUNK` elements is written in place by a loop over chunks (`_looped_draw`), so its
  temporaries are those of one chunk.
- `_chunk_kernel` generates a flat chunk of a fixed size at a given position of the random stream. With
  threefry and `jax_threefry_partitionable=True` (JAX's default) element ``i`` of a sample depends only on
  the key and on ``i``, so an eager call of any shape is assembled from chunks of three sizes and never
  compiles the sampler for a new shape. Chunk sizes are powers of two, so the stream position of every chunk
  is known exactly; the random bits are threefry's, counted from that position, through a PRNG
  implementation whose key also carries the position (`_POSITIONED_THREEFRY`). On CPU the chunks are copied
  into one host buffer that the result aliases.

`bulk` is the mode of `init_tree`: chunks for every eager sample on CPU, exact kernels elsewhere.
"""

import collections
import concurrent.futures
import contextlib
import functools
import itertools
import math
import threading
from collections.abc import Iterator, Sequence
from typing import Any, cast

import jax
import jax.numpy as jnp
import numpy as np
from jax.core import Tracer
from jax.extend import random as jex_random
from jax.sharding import Sharding

from jinit._src import checks

# --------------------------------------------------------------------------------------------- dtypes


def compute_dtype(dtype: np.dtype) -> np.dtype:
    """The dtype a sample is computed in: float32 for floats narrower than 32 bits, else `dtype` itself."""
    if jnp.issubdtype(dtype, jnp.floating) and jnp.finfo(dtype).bits < 32:
        return jnp.dtype(jnp.float32)
    return dtype


def _inward(bound: jax.Array, dtype: np.dtype, *, down: bool, strict: bool) -> jax.Array:
    """`bound` (a float32 scalar) rounded into `dtype` on its inner side.

    down=True gives the largest value of `dtype` that is <= bound (< bound when `strict`); down=False the
    smallest that is >= bound.
    """
    rounded = bound.astype(dtype)
    wide = rounded.astype(bound.dtype)
    # Step towards the finite extremes, not towards infinity: float8 types without infinities make it NaN.
    if down:
        outside = (wide >= bound) if strict else (wide > bound)
        return jnp.where(outside, jax.lax.nextafter(rounded, jnp.array(jnp.finfo(dtype).min, dtype)), rounded)
    outside = wide < bound
    return jnp.where(outside, jax.lax.nextafter(rounded, jnp.array(jnp.finfo(dtype).max, dtype)), rounded)


def _cast(
    x: jax.Array, dtype: np.dtype, lower: Any = None, upper: Any = None, upper_open: bool = False, always: bool = False
) -> jax.Array:
    """Casts a sample computed in `compute_dtype` to `dtype`, keeping it inside [lower, upper] (or [lower, upper)).

    A sample already in `dtype` is left alone (it is JAX's), unless `always`.
    """
    if x.dtype == dtype and not always:
        return x
    y = x.astype(dtype)
    if lower is not None:
        y = jnp.maximum(y, _inward(jnp.asarray(lower, x.dtype), dtype, down=False, strict=False))
    if upper is not None:
        y = jnp.minimum(y, _inward(jnp.asarray(upper, x.dtype), dtype, down=True, strict=upper_open))
    return y


# ------------------------------------------------------------------------------------ distributions

# Standard deviation of a standard normal truncated to (-2, 2): variance scaling divides by it so that the
# variance is exactly `scale / n`. JAX's constant for a complex standard normal whose modulus is truncated to 2
# is ``sqrt(1 - 5 exp(-4))``, which leaves out the division by ``P(|z| <= 2) = 1 - exp(-4)``: the variance is
# then ``scale / n / (1 - exp(-4))``, 1.87% more. jinit keeps JAX's constant, and so JAX's values.
TRUNCATED_STDDEV = 0.87962566103423978
COMPLEX_TRUNCATED_STDDEV = 0.95311164380491208

KINDS = ("normal", "uniform", "truncated_normal", "random_uniform", "vs_truncated_normal", "vs_normal", "vs_uniform")


def _materialized(x: jax.Array) -> jax.Array:
    """`x` as a value XLA cannot fold into the arithmetic that uses it.

    `jax.nn.initializers` scales a finished sample in a separate operation. In one program XLA would merge
    ``sqrt(2) * erf_inv(u) * stddev`` into ``erf_inv(u) * (sqrt(2) * stddev)``, and turn a division by a
    constant into a multiplication by its reciprocal, and fold constant expressions with its own (not the
    run-time) functions; each rounds differently. The barrier keeps JAX's operations, and so the bits of
    JAX's result.
    """
    return jax.lax.optimization_barrier(x)


def _constant(value: complex, dtype: np.dtype) -> jax.Array:
    """A constant that XLA computes with at run time, as in JAX's op-by-op code (see `_materialized`)."""
    return _materialized(jnp.asarray(value, dtype))


def _complex_uniform(key: jax.Array, shape: tuple[int, ...], dtype: np.dtype) -> jax.Array:
    """Uniform on the unit-variance disk, as `jax.nn.initializers` computes it."""
    key_r, key_theta = jax.random.split(key)
    real_dtype = jnp.finfo(dtype).dtype
    r = jnp.sqrt(_constant(2, real_dtype) * jax.random.uniform(key_r, shape, real_dtype)).astype(dtype)
    theta = _constant(2 * np.pi, dtype) * jax.random.uniform(key_theta, shape, real_dtype).astype(dtype)
    return r * jnp.exp(_constant(1j, dtype) * theta)


def _complex_truncated_normal(key: jax.Array, upper: float, shape: tuple[int, ...], dtype: np.dtype) -> jax.Array:
    """Complex standard normal with modulus truncated to `upper`, as `jax.nn.initializers` computes it."""
    key_r, key_theta = jax.random.split(key)
    real_dtype = jnp.finfo(dtype).dtype
    one = _constant(1, dtype)
    t = (one - jnp.exp(_constant(-(upper**2), dtype))) * jax.random.uniform(key_r, shape, real_dtype).astype(dtype)
    r = jnp.sqrt(-_materialized(jnp.log(one - t)))
    theta = _constant(2 * np.pi, dtype) * jax.random.uniform(key_theta, shape, real_dtype).astype(dtype)
    return r * jnp.exp(_constant(1j, dtype) * theta)


def _draw(kind: str, key: jax.Array, shape: tuple[int, ...], dtype: np.dtype, params: tuple) -> jax.Array:
    """A sample of distribution `kind`; traceable, with `params` traced.

    params by kind: normal (stddev, mean or None); uniform (scale,); truncated_normal (stddev, mean or None,
    lower, upper); random_uniform (minval, maxval); vs_* (variance,).
    """
    ct = compute_dtype(dtype)
    real = not jnp.issubdtype(ct, jnp.complexfloating)
    if kind == "normal":
        stddev, mean = params
        x = _materialized(jax.random.normal(key, shape, ct)) * jnp.asarray(stddev, ct)
        return _cast(x if mean is None else x + jnp.asarray(mean, ct), dtype)
    if kind == "uniform":
        (scale,) = params
        x = _materialized(jax.random.uniform(key, shape, ct)) * jnp.asarray(scale, ct)
        return _cast(x, dtype, 0.0, scale, upper_open=True)
    if kind == "truncated_normal":
        stddev, mean, lower, upper = params
        x = _materialized(jax.random.truncated_normal(key, lower, upper, shape, ct)) * jnp.asarray(stddev, ct)
        shift = 0.0 if mean is None else mean
        x = x if mean is None else x + jnp.asarray(mean, ct)
        return _cast(x, dtype, shift + lower * stddev, shift + upper * stddev)
    if kind == "random_uniform":
        minval, maxval = params
        # Materialized bounds: folded as constants (under a user's `jit`), XLA would round differently.
        low, high = _materialized(jnp.asarray(minval, ct)), _materialized(jnp.asarray(maxval, ct))
        x = jax.random.uniform(key, shape, ct, low, high)
        # minval + u * (maxval - minval) can round up to maxval, in any dtype: keep [minval, maxval) half-open
        return _cast(x, dtype, minval, maxval, upper_open=True, always=True)
    (variance,) = params
    variance = jnp.asarray(variance, ct)
    if kind == "vs_truncated_normal":
        if real:
            stddev = jnp.sqrt(variance) / _constant(TRUNCATED_STDDEV, ct)
            x = _materialized(jax.random.truncated_normal(key, -2, 2, shape, ct)) * stddev
            return _cast(x, dtype, -2 * stddev, 2 * stddev)
        stddev = jnp.sqrt(variance) / _constant(COMPLEX_TRUNCATED_STDDEV, ct)
        return _materialized(_complex_truncated_normal(key, 2, shape, ct)) * stddev
    if kind == "vs_normal":
        return _cast(_materialized(jax.random.normal(key, shape, ct)) * jnp.sqrt(variance), dtype)
    if kind == "vs_uniform":
        if real:
            limit = jnp.sqrt(3 * variance)
            x = _materialized(jax.random.uniform(key, shape, ct, -1)) * limit
            return _cast(x, dtype, -limit, limit, upper_open=True)
        return _materialized(_complex_uniform(key, shape, ct)) * jnp.sqrt(variance)
    raise AssertionError(kind)


# ------------------------------------------------------------------------------------------ kernels


def lay_out(draw: Any, out_sharding: Sharding | None, *args: Any) -> jax.Array:
    """``draw(*args)`` laid out as `out_sharding`, as `jax.random` does for explicit and auto mesh axes."""
    if out_sharding is None:
        return draw(*args)
    mesh = getattr(out_sharding, "mesh", None)
    explicit = getattr(mesh, "explicit_axes", ())
    if explicit:
        return cast(jax.Array, jax.sharding.auto_axes(draw, out_sharding=out_sharding, axes=explicit)(*args))
    return jax.lax.with_sharding_constraint(draw(*args), out_sharding)


@functools.partial(jax.jit, static_argnames=("kind", "shape", "dtype", "out_sharding", "flat"))
def _exact_kernel(key, params, *, kind, shape, dtype, out_sharding, flat):
    """A sample of exactly `shape`; drawn flat and reshaped where that gives the same values (see `_flat`)."""
    n = math.prod(shape)
    if flat and LOOP_CHUNK < n < 2**31:
        return _looped_draw(kind, key, n, dtype, params).reshape(shape)
    drawn = (n,) if flat else shape
    return lay_out(lambda k, p: _draw(kind, k, drawn, dtype, p).reshape(shape), out_sharding, key, params)


def _positioned_bits(data: jax.Array, bit_width: int, shape: Sequence[int]) -> jax.Array:
    """Threefry's partitionable random bits, counted from the 64-bit position held in `data[2:]`.

    `data` is ``[k1, k2, position_hi, position_lo]``; element ``i`` (in row-major order) gets the bits that
    `jax.random.bits` gives element ``position + i`` of a large enough sample from the key ``[k1, k2]``.
    """
    k1, k2, hi, lo = data[0], data[1], data[2], data[3]
    index = jax.lax.iota(np.uint32, math.prod(shape)).reshape(shape)
    count_lo = lo + index
    count_hi = hi + (count_lo < lo).astype(np.uint32)
    bits1, bits2 = jex_random.threefry2x32_p.bind(k1, k2, count_hi, count_lo)
    if bit_width == 64:
        return (bits1.astype(np.uint64) << np.uint64(32)) | bits2.astype(np.uint64)
    bits = bits1 ^ bits2
    return bits if bit_width == 32 else bits.astype(np.dtype(f"uint{bit_width}"))


def _positioned_split(data: jax.Array, shape: Sequence[int]) -> jax.Array:
    keys = jex_random.threefry_prng_impl.split(data[:2], tuple(shape))
    return jnp.concatenate([keys, jnp.broadcast_to(data[2:], (*shape, 2))], axis=-1)


def _positioned_fold_in(data: jax.Array, value: Any) -> jax.Array:
    return jnp.concatenate([jex_random.threefry_prng_impl.fold_in(data[:2], value), data[2:]])


def _positioned_seed(seed: jax.Array) -> jax.Array:
    return jnp.concatenate([jex_random.threefry_prng_impl.seed(seed), jnp.zeros(2, np.uint32)])


_POSITIONED_THREEFRY = jex_random.define_prng_impl(
    key_shape=(4,),
    seed=_positioned_seed,
    split=_positioned_split,
    random_bits=_positioned_bits,
    fold_in=_positioned_fold_in,
    name="jinit_positioned_threefry2x32",
    tag="jpt",
)


def _positioned_key(key_data: jax.Array, position: jax.Array) -> jax.Array:
    """A key of `_POSITIONED_THREEFRY`: threefry's `key_data`, and a stream position ``uint32[hi, lo]``."""
    return jax.random.wrap_key_data(jnp.concatenate([key_data, position]), impl=_POSITIONED_THREEFRY)


def _key_data(key: jax.Array) -> jax.Array:
    """A threefry key's ``uint32[2]`` data, from a typed or a raw key."""
    return jax.random.key_data(key) if jnp.issubdtype(key.dtype, jax.dtypes.prng_key) else key


LOOP_CHUNK = 2**20
"""A flat sample of more elements is written into its buffer by a loop, one chunk of this size at a time."""


def _looped_draw(kind: str, key: jax.Array, n: int, dtype: np.dtype, params: tuple) -> jax.Array:
    """The flat sample of `n` elements (LOOP_CHUNK < n < 2**31), generated chunk by chunk in place.

    Drawn whole, a sample keeps about three full-size temporaries alive (threefry's two words of bits and the
    unscaled sample); chunk by chunk, the temporaries are those of one chunk, and the loop is faster, as each
    chunk stays in cache. Each chunk is drawn at its own position of the stream, so the values are the same.
    The last chunk ends at `n`, overlapping the one before it, whose values it writes again: one chunk size, so
    one copy of the sampler to compile.
    """
    key_data = _key_data(key)

    def write(i: jax.Array, out: jax.Array) -> jax.Array:
        start = jnp.minimum(i * LOOP_CHUNK, n - LOOP_CHUNK)
        position = jnp.stack([jnp.uint32(0), start.astype(np.uint32)])  # n < 2**31: the high word is 0
        chunk = _draw(kind, _positioned_key(key_data, position), (LOOP_CHUNK,), dtype, params)
        return jax.lax.dynamic_update_slice(out, chunk, (start,))

    return jax.lax.fori_loop(0, -(-n // LOOP_CHUNK), write, jnp.empty((n,), dtype))


@functools.partial(jax.jit, static_argnames=("kind", "size", "dtype"))
def _chunk_kernel(key_data, position, params, *, kind, size, dtype):
    return _draw(kind, _positioned_key(key_data, position), (size,), dtype, params)


CHUNK_SIZES = (2**10, 2**14, 2**18)
"""The three sizes of chunk an eager sample is made of: each is compiled once per kind and dtype."""


def chunk_plan(n: int) -> list[tuple[int, int]]:
    """`(position, size)` of the chunks that cover a sample of `n` elements.

    Whole chunks of the largest size first, then of each smaller size; a remainder larger than half a chunk
    takes one more whole chunk of that size, and the last remainder one chunk of the smallest size. So less
    than half of a largest chunk is generated in vain, and at most 17 chunks are added to the largest ones.
    """
    plan = []
    position = 0
    for size in reversed(CHUNK_SIZES):
        count, rest = divmod(n - position, size)
        if rest * 2 > size or (size == CHUNK_SIZES[0] and rest):
            count += 1
        plan.extend((position + i * size, size) for i in range(count))
        position = min(n, position + count * size)
        if position >= n:
            break
    return plan


def _flat(key: Any, out_sharding: Sharding | None) -> bool:
    """Whether a sample of any shape is the flat sample of its size, reshaped: partitionable threefry.

    A flat sample compiles faster and runs faster on CPU than one of a convolution kernel's rank.
    """
    if out_sharding is not None or not checks.flag("jax_threefry_partitionable"):
        return False
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        return jax.random.key_impl(key) == "threefry2x32"
    return checks.flag("jax_default_prng_impl") == "threefry2x32"


def _chunkable(key: Any, out_sharding: Sharding | None) -> bool:
    """Whether an eager call can be assembled from chunks (see the module docstring)."""
    if isinstance(key, Tracer) or not _flat(key, out_sharding):
        return False
    return not isinstance(key, jax.Array) or len(key.devices()) == 1


# A shape that is asked for again is likely to be asked for many times (the layers of a model, a loop):
# its exact kernel is then compiled in the background, and used once ready. Chunks are faster on a first
# call, since nothing compiles; the exact kernel is faster warm, as it is one dispatch with no copy.
_REPEATED_MOST = 2**22  # larger samples gain nothing from it, as chunks are as fast there
_calls: collections.Counter = collections.Counter()
_compiled: set[tuple] = set()
_pending: list[concurrent.futures.Future] = []
_lock = threading.Lock()
_compiler = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="jinit-compile")


def _exact_is_ready(kind: str, key: Any, shape: tuple[int, ...], dtype: np.dtype, params: tuple) -> bool:
    """Whether the exact kernel of this call is compiled; on a shape's second call, starts compiling it."""
    if math.prod(shape) > _REPEATED_MOST:
        return False
    signature = (kind, shape, dtype, key.dtype, key.shape, tuple(p is None for p in params))
    with _lock:
        if signature in _compiled:
            return True
        _calls[signature] += 1
        if _calls[signature] != 2:
            return False
    x64 = checks.flag("jax_enable_x64")  # the worker thread does not see this thread's config contexts
    device = next(iter(key.devices())) if isinstance(key, jax.Array) else None

    def compile_() -> None:
        with jax.enable_x64(x64), jax.default_device(device):
            x = _exact_kernel(key, params, kind=kind, shape=shape, dtype=dtype, out_sharding=None, flat=True)
            x.block_until_ready()
        with _lock:
            _compiled.add(signature)

    with _lock:
        _pending.append(_compiler.submit(compile_))
    return False


_mode = threading.local()


@contextlib.contextmanager
def bulk() -> Any:
    """Within it, eager samples are many parameters at once (`init_tree`): nothing compiles per call pattern.

    On CPU every sample is assembled from chunks in place (no background compilation of repeated shapes:
    the chunks are already as fast there); on other platforms every sample runs its exact kernel, compiled
    once per shape and written in place. The values are those of any other call.
    """
    previous = getattr(_mode, "bulk", False)
    _mode.bulk = True
    try:
        yield
    finally:
        _mode.bulk = previous


def settle() -> None:
    """Waits for the exact kernels being compiled in the background (for benchmarks and tests)."""
    with _lock:
        pending, _pending[:] = list(_pending), []
    concurrent.futures.wait(pending)


_IN_FLIGHT = 8
"""Chunks dispatched ahead of the one being copied: enough to keep XLA busy, few enough to hold little memory."""


def _aligned_empty(n: int, dtype: np.dtype) -> np.ndarray:
    """An uninitialized host buffer of `n` elements aligned to 64 bytes, which JAX's CPU arrays can alias."""
    raw = np.empty(n * dtype.itemsize + 64, np.uint8)
    start = -raw.ctypes.data % 64
    return raw[start : start + n * dtype.itemsize].view(dtype)


def _assemble_on_host(chunks: Iterator[jax.Array], n: int, shape: tuple[int, ...], device: Any) -> jax.Array:
    """CPU: copies the chunks' first `n` elements into one host buffer, which the result then aliases.

    No compilation, no second copy, and at most `_IN_FLIGHT` chunks alive at once.
    """
    pending = collections.deque(itertools.islice(chunks, _IN_FLIGHT))
    out, position = _aligned_empty(n, np.dtype(pending[0].dtype)), 0
    while pending:
        chunk = np.asarray(pending.popleft())  # a view of the chunk's host memory
        pending.extend(itertools.islice(chunks, 1))
        take = min(chunk.shape[0], n - position)
        out[position : position + take] = chunk[:take]
        position += take
    out.flags.writeable = False
    return jax.device_put(out.reshape(shape), device, may_alias=True)


@functools.partial(jax.jit, static_argnames=("n", "shape"))
def _assemble_on_device(chunks, *, n, shape):
    """Other platforms: one small program per shape that concatenates, trims and reshapes the chunks."""
    return jnp.concatenate(chunks)[:n].reshape(shape)


def _platform(key: Any) -> str:
    """The platform a concrete key's sample is computed on."""
    return next(iter(key.devices())).platform if isinstance(key, jax.Array) else jax.default_backend()


def sample(
    kind: str,
    key: Any,
    shape: tuple[int, ...],
    dtype: np.dtype,
    params: tuple,
    out_sharding: Sharding | None = None,
) -> jax.Array:
    """Draws a sample of distribution `kind` with a checked key, shape and dtype."""
    if math.prod(shape) == 0:
        return jnp.zeros(shape, dtype, out_sharding=cast(Any, out_sharding))
    if kind == "vs_truncated_normal" and jnp.issubdtype(dtype, jnp.complexfloating):
        # XLA's complex log rounds differently once fused with the operations around it, even across
        # optimization barriers; run JAX's operations one by one, as `jax.nn.initializers` does.
        return lay_out(lambda k, p: _draw(kind, k, shape, dtype, p), out_sharding, key, params)
    bulk = getattr(_mode, "bulk", False)
    if not _chunkable(key, out_sharding) or (bulk and _platform(key) != "cpu"):
        flat = _flat(key, out_sharding)
        return _exact_kernel(key, params, kind=kind, shape=shape, dtype=dtype, out_sharding=out_sharding, flat=flat)
    if not bulk and _exact_is_ready(kind, key, shape, dtype, params):
        return _exact_kernel(key, params, kind=kind, shape=shape, dtype=dtype, out_sharding=None, flat=True)
    key_data = _key_data(key)
    n = math.prod(shape)

    def chunk(position: int, size: int) -> jax.Array:
        offset = np.array([position >> 32, position & 0xFFFFFFFF], np.uint32)
        return _chunk_kernel(key_data, offset, params, kind=kind, size=size, dtype=dtype)

    plan = chunk_plan(n)
    first = chunk(*plan[0])
    if isinstance(first, Tracer):  # a concrete key closed over by a user's `jit`
        return _exact_kernel(key, params, kind=kind, shape=shape, dtype=dtype, out_sharding=None, flat=True)
    device = next(iter(first.devices()))
    if device.platform == "cpu":
        return _assemble_on_host(itertools.chain([first], (chunk(*entry) for entry in plan[1:])), n, shape, device)
    chunks = [first, *(chunk(*entry) for entry in plan[1:])]
    if len(chunks) == 1 and chunks[0].shape == (n,):
        return chunks[0].reshape(shape)
    return _assemble_on_device(chunks, n=n, shape=shape)


# ------------------------------------------------------------------------------------- orthogonal


def _orthogonal(key, scale, shape, column_axis, dtype):
    """An orthogonal matrix from the QR of a normal one, reshaped, as `jax.nn.initializers.orthogonal`.

    `jax.random.orthogonal` multiplies each column of Q by the sign of R's diagonal, which makes the result
    uniform over the orthogonal group (Haar measure).
    """
    ct = compute_dtype(dtype)
    n_cols = shape[column_axis]
    n_rows = math.prod(shape) // n_cols
    q = jax.random.orthogonal(key, n_rows, (), ct, n_cols)
    q = jnp.reshape(q, (*np.delete(shape, column_axis), n_cols))
    q = jnp.moveaxis(q, -1, column_axis)
    return (jnp.asarray(scale, ct) * q).astype(dtype)


@functools.partial(jax.jit, static_argnames=("shape", "column_axis", "dtype", "out_sharding"))
def orthogonal_kernel(key, scale, *, shape, column_axis, dtype, out_sharding):
    """`_orthogonal`, laid out as `out_sharding`."""
    return lay_out(lambda k, s: _orthogonal(k, s, shape, column_axis, dtype), out_sharding, key, scale)


@functools.partial(jax.jit, static_argnames=("shape", "column_axis", "dtype", "out_sharding"))
def delta_orthogonal_kernel(key, scale, *, shape, column_axis, dtype, out_sharding):
    """An orthogonal matrix at the centre of a convolution kernel, zeros elsewhere."""

    def draw(k, s):
        matrix = _orthogonal(k, s, shape[-2:], column_axis, dtype)
        return jnp.zeros(shape, dtype).at[tuple((size - 1) // 2 for size in shape[:-2])].set(matrix)

    return lay_out(draw, out_sharding, key, scale)
