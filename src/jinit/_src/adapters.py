"""LoRA adapters for an existing weight, initialized as PEFT does: LoRA's (random `a`, zero `b`), PiSSA and OLoRA.

Layouts are JAX's: a weight is ``(..., in, out)`` as Flax's `Dense` kernel (``y = x @ w``), the adapters are
``a: (..., in, rank)`` and ``b: (..., rank, out)``, and the adapted layer computes
``x @ residual + scale * (x @ a) @ b``. PEFT's layers are PyTorch's ``(out, in)``: its ``lora_A.weight`` is
``a.T`` and its ``lora_B.weight`` is ``b.T``, and the factorizations below are those of PEFT's weight, ``w.T``.
"""

import functools
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.core import Tracer

from jinit._src import checks, distributions
from jinit._src.constant import zeros
from jinit._src.random import normal
from jinit._src.typing import DTypeLike, KeyArray
from jinit._src.variance_scaling import variance_scaling

SCHEMES = ("lora", "gaussian", "pissa", "olora")
RANDOM = ("lora", "gaussian")
HIGHEST = jax.lax.Precision.HIGHEST


class LoraInit(NamedTuple):
    """What `lora` returns: the adapters and the weight that replaces the base weight.

    ``residual + scale * (a @ b)`` is the original weight, the product computed as `lora` computes it: in
    float32 (float64 for a float64 weight) with ``precision=jax.lax.Precision.HIGHEST``.

    Attributes:
      a: the down-projection, ``(..., in, rank)``.
      b: the up-projection, ``(..., rank, out)``.
      residual: the base weight to use with the adapters, ``(..., in, out)``, in the weight's dtype.
    """

    a: jax.Array
    b: jax.Array
    residual: jax.Array


def lora(
    key: KeyArray | None,
    weight: jax.Array | np.ndarray,
    rank: int,
    *,
    scheme: str = "lora",
    alpha: float | None = None,
    rslora: bool = False,
    niter: int | None = None,
    dtype: DTypeLike | None = None,
) -> LoraInit:
    r"""Initializes LoRA adapters ``a``, ``b`` for `weight`, and the residual weight they are added to.

    The adapted weight is ``residual + scale * (a @ b)`` with ``scale = alpha / rank`` (``alpha / sqrt(rank)``
    with `rslora`), as in PEFT's `LoraConfig(lora_alpha=alpha, use_rslora=rslora)`. The schemes are PEFT's
    `init_lora_weights`:

    - ``"lora"`` (PEFT's default, ``init_lora_weights=True``, and Microsoft's `loralib`): ``a`` uniform in
      ``[-1/sqrt(in), 1/sqrt(in))`` (`torch.nn.init.kaiming_uniform_` with ``a=sqrt(5)``, `nn.Linear`'s
      default, on ``lora_A``), ``b`` zeros, ``residual`` the weight itself.
    - ``"gaussian"`` (``init_lora_weights="gaussian"``): ``a`` normal with standard deviation ``1 / rank``,
      ``b`` zeros, ``residual`` the weight itself.
    - ``"pissa"`` (principal singular values and vectors, Meng et al., 2024): with ``U, S, Vh = svd(w)`` and
      ``s = sqrt(S[:rank] / scale)``, ``a = U[:, :rank] * s`` and ``b = s[:, None] * Vh[:rank]``, so
      ``scale * (a @ b)`` is the best rank-`rank` approximation of the weight whatever the scale (PEFT
      divides the singular values by the scale) and ``residual`` the rest. With `niter`, the top singular
      triplets come from the randomized SVD of `torch.svd_lowrank` with `niter` subspace iterations (PEFT's
      ``"pissa_niter_[niter]"``), much faster for large weights, and drawn from `key`.
    - ``"olora"`` (orthonormal, Büyükakyüz, 2024): with ``Q, R = qr(w.T)`` (reduced QR of PEFT's ``(out, in)``
      weight), ``a = R[:rank].T`` and ``b = Q[:, :rank].T``: the rows of ``b`` are orthonormal and ``a`` is
      lower triangular. As in PEFT, the scale is not folded in: ``scale * (a @ b)`` is ``scale`` times the
      first `rank` terms of the QR.

    For every scheme, ``residual = w - scale * (a @ b)`` (the two zero for ``"lora"`` and ``"gaussian"``), with
    ``a`` and ``b`` as returned (already rounded to `dtype`), computed in float32 (float64 for a float64
    weight) with ``precision=jax.lax.Precision.HIGHEST`` and then cast to the weight's dtype. So
    ``residual + scale * jnp.matmul(a, b, precision=HIGHEST)``, computed in float32, gives back a float32
    weight up to float32 rounding (a relative Frobenius error of about 1e-7); a bfloat16 or float16 weight
    is factored exactly (it is cast to float32 first), and the only error left is the rounding of
    ``residual`` to the weight's dtype. On GPUs and TPUs the default matmul precision is lower: compute the
    product with ``HIGHEST`` precision, as here, to recover the weight.

    A weight of shape ``(*batch, in, out)`` (stacked layers, heads) gets adapters of shapes
    ``(*batch, in, rank)`` and ``(*batch, rank, out)``, each matrix factored on its own. The factorizations
    run under `jax.jit` (`rank`, `scheme`, `alpha`, `rslora`, `niter` and `dtype` static) and on a sharded
    weight: ``a`` is laid out as the weight's ``in`` axis, ``b`` as its ``out`` axis and ``residual`` as the
    weight. The SVD and QR themselves see each matrix whole (XLA gathers it), so PiSSA and OLoRA of a weight
    too large for one device need another method.

    Args:
      key: a PRNG key for ``"lora"``, ``"gaussian"`` and ``"pissa"`` with `niter`; the other schemes use no
        randomness and take None (a key is checked, then unused).
      weight: the base weight, a JAX or NumPy array of a real floating dtype, of shape ``(..., in, out)``.
      rank: the adapters' rank, ``1 <= rank <= min(in, out)``.
      scheme: ``"lora"``, ``"gaussian"``, ``"pissa"`` or ``"olora"``.
      alpha: PEFT's `lora_alpha`, a positive finite number; None gives ``scale = 1``.
      rslora: whether ``scale = alpha / sqrt(rank)`` (rank-stabilized LoRA) rather than ``alpha / rank``.
      niter: for ``"pissa"`` only: None for the exact SVD, or the number (>= 0) of subspace iterations of a
        randomized SVD.
      dtype: the dtype of ``a`` and ``b``, a floating dtype; None is the weight's dtype. (PEFT keeps adapters
        of a bfloat16 or float16 model in float32 by default: pass ``dtype=jnp.float32`` for that.)

    Returns:
      A `LoraInit` ``(a, b, residual)`` of JAX arrays.

    Raises:
      TypeError: `weight` is not a floating-point array, `rank` or `niter` not an integer, `alpha` not a
        number, `rslora` not a bool, `dtype` not a floating dtype, or `key` not a PRNG key (or None where
        one is needed).
      ValueError: `weight` has fewer than 2 axes, `rank` is not in ``[1, min(in, out)]``, `scheme` is
        unknown, `alpha` is not positive and finite or (PiSSA, OLoRA) gives a scale ``alpha / rank`` whose
        adapters could overflow (outside ``[1 / L, L]``, ``L`` the square root of float32's largest value, or
        the adapter dtype's largest if smaller), or `niter` is negative, above 1024, or given to another
        scheme than ``"pissa"``.

    Examples:
      >>> import jax, jax.numpy as jnp, jinit
      >>> w = jax.random.normal(jax.random.key(0), (64, 32))
      >>> a, b, residual = jinit.lora(jax.random.key(1), w, 8)
      >>> a.shape, b.shape, bool((b == 0).all()), bool((residual == w).all())
      ((64, 8), (8, 32), True, True)
      >>> a, b, residual = jinit.lora(None, w, 8, scheme="pissa", alpha=16.0)  # scale = 16 / 8
      >>> merged = residual + 2.0 * jnp.matmul(a, b, precision=jax.lax.Precision.HIGHEST)
      >>> bool(jnp.linalg.norm(merged - w) / jnp.linalg.norm(w) < 1e-6)
      True
    """
    shape, weight_dtype = _weight(weight)
    rank = checks.integer("rank", rank)
    if not 1 <= rank <= min(shape[-2:]):
        raise ValueError(
            f"Argument `rank` must be at least 1 and at most min(in, out) = {min(shape[-2:])} for a weight of "
            f"shape (..., in, out). Received: rank={rank}, weight.shape={shape}"
        )
    scheme = checks.choice("scheme", scheme, SCHEMES)
    scale = _scale(rank, alpha, rslora)
    if niter is not None:
        niter = checks.integer("niter", niter, minimum="nonnegative")
        if niter > MAX_NITER:
            raise ValueError(
                f"Argument `niter` must be at most {MAX_NITER} (PEFT uses a few; each iteration is two QRs of the "
                f"weight). Received: niter={niter}"
            )
        if scheme != "pissa":
            raise ValueError(
                "Argument `niter` must be None, or a number of iterations >= 0 for scheme 'pissa'. "
                f"Received: niter={niter}, scheme={scheme!r}"
            )
    adapter_dtype = weight_dtype if dtype is None else jnp.dtype(checks.dtype("dtype", dtype))
    if not jnp.issubdtype(adapter_dtype, jnp.floating):
        raise TypeError(f"Argument `dtype` must be a floating-point dtype. {checks.received('dtype', dtype)}")
    if scheme not in RANDOM:
        _check_scale(scale, alpha, rank, weight_dtype, adapter_dtype)
    if scheme in RANDOM or niter is not None:
        if key is None:
            raise TypeError(
                f"Argument `key` is needed: scheme {scheme!r}{' with `niter`' if niter is not None else ''} is "
                "random. Pass a single key such as `jax.random.key(0)`. Received: key=None"
            )
        key = checks.key(key)
    elif key is not None:
        checks.key(key)
        key = None  # unused: the factorization is deterministic
    layouts = _layouts(weight)
    if scheme in RANDOM:
        return _random(key, weight, rank, scheme, adapter_dtype, layouts)
    out = _factorize(weight, scale, key, rank=rank, scheme=scheme, niter=niter, dtype=adapter_dtype, layouts=layouts)
    if layouts is None or isinstance(out.a, Tracer):
        return out
    return LoraInit(*(_described(x, sharding) for x, sharding in zip(out, layouts, strict=True)))


def _weight(weight: Any) -> tuple[tuple[int, ...], np.dtype]:
    """Checks the weight: a JAX (or traced) or NumPy array of a real floating dtype with 2 axes or more."""
    if not isinstance(weight, jax.Array | np.ndarray):
        raise TypeError(f"Argument `weight` must be a JAX or NumPy array. {checks.received('weight', weight)}")
    dtype = jnp.dtype(weight.dtype)
    if not jnp.issubdtype(dtype, jnp.floating):
        raise TypeError(
            f"Argument `weight` must have a real floating-point dtype. {checks.received('weight.dtype', dtype.name)}"
        )
    shape = tuple(weight.shape)
    if len(shape) < 2:
        raise ValueError(
            f"Argument `weight` must have 2 axes or more, (..., in, out). {checks.received('weight.shape', shape)}"
        )
    return shape, dtype


def _scale(rank: int, alpha: Any, rslora: Any) -> float:
    """``alpha / rank``, or ``alpha / sqrt(rank)`` with `rslora`; 1 when `alpha` is None."""
    rslora = checks.boolean("rslora", rslora)
    if alpha is None:
        return 1.0
    if isinstance(alpha, Tracer):
        raise TypeError(
            "Argument `alpha` must be a concrete number: it is checked before anything is computed; under "
            f"`jax.jit`, make it a static argument. {checks.received('alpha', alpha)}"
        )
    alpha = checks.number("alpha", alpha, minimum="positive")
    return alpha / (math.sqrt(rank) if rslora else rank)


MAX_NITER = 1024
"""The most subspace iterations `lora`'s randomized SVD runs."""


def _check_scale(scale: float, alpha: Any, rank: int, weight_dtype: np.dtype, adapter_dtype: np.dtype) -> None:
    """A ValueError when PiSSA's or OLoRA's adapters (about ``sqrt(s / scale)``, or the weight's size) or the
    residual ``w - scale * a @ b`` could overflow or underflow: `scale` must lie within ``[1 / L, L]``, ``L`` the
    square root of the computation's largest float, and at most the adapters' own largest value."""
    largest = float(jnp.finfo(np.float64 if weight_dtype == np.float64 else np.float32).max)
    limit = min(math.sqrt(largest), float(jnp.finfo(adapter_dtype).max))
    if not 1 / limit <= scale <= limit:
        raise ValueError(
            f"Argument `alpha` gives a scale (alpha / rank = {scale!r}) outside [{1 / limit:.3g}, {limit:.3g}], "
            f"where PiSSA's and OLoRA's adapters or residual would overflow or underflow "
            f"{jnp.dtype(adapter_dtype).name}. Received: alpha={alpha!r}, rank={rank}"
        )


def _layouts(weight: Any) -> tuple[jax.sharding.NamedSharding, ...] | None:
    """The layouts of ``(a, b, residual)`` for a weight laid out by a `NamedSharding`; None for other weights.

    ``a`` is sharded as the weight's ``in`` axis, ``b`` as its ``out`` axis, both as its batch axes. Under a trace
    only explicit mesh axes are known (they are part of the type); XLA lays out the rest.
    """
    if isinstance(weight, Tracer):
        sharding = getattr(jax.typeof(weight), "sharding", None)
        if sharding is None or not getattr(sharding.mesh, "explicit_axes", ()):
            return None
    else:
        sharding = getattr(weight, "sharding", None)
    if not isinstance(sharding, jax.sharding.NamedSharding):
        return None
    spec = (*sharding.spec, *(None,) * (weight.ndim - len(sharding.spec)))
    batch, rows, cols = spec[:-2], spec[-2], spec[-1]
    P = jax.sharding.PartitionSpec
    mesh = sharding.mesh
    return tuple(jax.sharding.NamedSharding(mesh, P(*batch, *s)) for s in ((rows, None), (None, cols), (rows, cols)))


def _explicit(layouts: Any) -> bool:
    return layouts is not None and bool(getattr(layouts[0].mesh, "explicit_axes", ()))


def _random(key, weight, rank, scheme, dtype, layouts) -> LoraInit:
    """LoRA's own initialization: ``a`` random, ``b`` zeros, the weight unchanged."""
    *batch, n_in, n_out = weight.shape
    if scheme == "lora":  # kaiming_uniform_(a=sqrt(5)): gain**2 = 2 / (1 + 5), so the limit is sqrt(1 / fan_in)
        init = variance_scaling(1.0 / 3.0, "fan_in", "uniform", batch_axis=tuple(range(len(batch))))
    else:
        init = normal(1.0 / rank)
    a_layout, b_layout = (None, None) if layouts is None else layouts[:2]
    a = init(key, (*batch, n_in, rank), dtype, out_sharding=a_layout)
    b = zeros(None, (*batch, rank, n_out), dtype, out_sharding=b_layout)
    return LoraInit(a, b, jnp.asarray(weight))


def _svd_lowrank(t: jax.Array, rank: int, niter: int, key: Any) -> tuple[jax.Array, jax.Array, jax.Array]:
    """The top-`rank` SVD of `t` (``(..., m, n)``) by `torch.svd_lowrank(t, q=rank, niter=niter)`'s method.

    Halko, Martinsson and Tropp's randomized range finder (their algorithm 4.4, without oversampling, as
    PyTorch): a normal ``(n, rank)`` test matrix, `niter` subspace iterations re-orthonormalized by QR, then the
    exact SVD of the small projection.
    """
    *batch, _, n = t.shape
    mm = functools.partial(jnp.matmul, precision=HIGHEST)
    q = jnp.linalg.qr(mm(t, normal(1.0)(key, (*batch, n, rank), t.dtype)))[0]
    q = jax.lax.fori_loop(0, niter, lambda _, q: jnp.linalg.qr(mm(t, jnp.linalg.qr(mm(t.mT, q))[0]))[0], q)
    u, s, vh = jnp.linalg.svd(mm(q.mT, t), full_matrices=False)
    return mm(q, u), s, vh


@functools.partial(jax.jit, static_argnames=("rank", "scheme", "niter", "dtype", "layouts"))
def _factorize(weight, scale, key, *, rank, scheme, niter, dtype, layouts) -> LoraInit:
    """PiSSA's and OLoRA's adapters and residual, from the factorization of PEFT's ``(out, in)`` weight ``w.T``."""
    compute = np.dtype(np.float64 if weight.dtype == np.float64 else np.float32)  # float8 does not promote
    w = jnp.asarray(weight).astype(compute)
    explicit = _explicit(layouts)
    a_layout, b_layout, w_layout = (None, None, None) if layouts is None else layouts
    whole = None
    if w_layout is not None:  # each matrix whole on every device: the values of one device, to the last bit
        spec = jax.sharding.PartitionSpec(*w_layout.spec[:-2], None, None)
        whole = jax.sharding.NamedSharding(w_layout.mesh, spec)
    t = _lay_out(w, whole, explicit).mT
    if scheme == "olora":
        q, r = jnp.linalg.qr(t)  # (out, k), (k, in)
        a, b = r[..., :rank, :].mT, q[..., :, :rank].mT
    else:
        if niter is None:
            u, s, vh = jnp.linalg.svd(t, full_matrices=False)  # (out, k), (k,), (k, in)
            u, s, vh = u[..., :, :rank], s[..., :rank], vh[..., :rank, :]
        else:
            u, s, vh = _svd_lowrank(t, rank, niter, key)
        root = jnp.sqrt(s / scale.astype(compute))
        a, b = vh.mT * root[..., None, :], root[..., :, None] * u.mT
    # a and b are computed whole, so that their layouts do not reach back into the factorization
    a = _lay_out(_lay_out(distributions.saturate(a, dtype), whole, explicit), a_layout, explicit)
    b = _lay_out(_lay_out(distributions.saturate(b, dtype), whole, explicit), b_layout, explicit)
    product = jnp.matmul(a.astype(compute), b.astype(compute), precision=HIGHEST)
    residual = distributions.saturate(w - scale.astype(compute) * product, weight.dtype)
    return LoraInit(a, b, _lay_out(residual, w_layout, explicit))


def _described(x: jax.Array, sharding: jax.sharding.NamedSharding) -> jax.Array:
    """`x` with `sharding` as its description when the two are the same layout (``P('x', None)``, not ``P('x')``)."""
    if x.sharding != sharding and x.sharding.is_equivalent_to(sharding, x.ndim):
        return jax.device_put(x, sharding)  # no data moves
    return x


def _lay_out(x: jax.Array, sharding: jax.sharding.NamedSharding | None, explicit: bool) -> jax.Array:
    """`x` laid out as `sharding` (None: as XLA likes), on explicit mesh axes or auto ones."""
    if sharding is None:
        return x
    if explicit:
        return jax.sharding.reshard(x, sharding)
    return jax.lax.with_sharding_constraint(x, sharding)
