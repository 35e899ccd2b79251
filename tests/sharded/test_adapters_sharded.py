"""`jinit.lora` on weights sharded over 8 simulated CPU devices: the adapters come back laid out as the weight
(``a`` as its ``in`` axis, ``b`` as its ``out`` axis, ``residual`` as the weight), they rebuild the weight, and
they are the values of the unsharded weight.

The random schemes draw from JAX's partitionable threefry, whose values do not depend on the layout: they are
compared bitwise. PiSSA and OLoRA factor each matrix whole (gathered on every device), so eagerly and with
explicit mesh axes they are bitwise the unsharded values too. Under a `jax.jit` of an auto-sharded weight, `lora`
cannot see the layout, XLA may split the randomized SVD's products differently, and its values differ from the
unsharded ones by rounding; the weight here has a decaying spectrum (singular values ``2**(-i / 4)``), so the
rank-8 subspace is well separated (gap ``sigma_8 - sigma_9 >= 0.03``) and they differ by at most the rounding
of a few float32 products over that gap.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import AxisType, NamedSharding
from jax.sharding import PartitionSpec as P

import jinit

KEY = jax.random.key(0)
HIGHEST = jax.lax.Precision.HIGHEST
EPS32 = float(np.finfo(np.float32).eps)
RANK, ALPHA = 8, 16.0
SCALE = ALPHA / RANK
MESHES = {
    "2x4_auto": jax.make_mesh((2, 4), ("a", "b"), axis_types=(AxisType.Auto,) * 2),
    "4x2_explicit": jax.make_mesh((4, 2), ("a", "b"), axis_types=(AxisType.Explicit,) * 2),
}
SPECS = {"in": P("a", None), "out": P(None, ("a", "b")), "both": P("a", "b")}
SCHEMES = {
    "lora": {"scheme": "lora"},  # "gaussian" lays out its sample as "lora" does; only the law differs
    "pissa": {"scheme": "pissa"},
    "pissa_niter": {"scheme": "pissa", "niter": 2},
    "olora": {"scheme": "olora"},
}


def _designed(m, n, seed=0):
    """An (m, n) float32 weight with singular values 2**(-i / 4), i = 0, 1, ..."""
    rng = np.random.default_rng(seed)
    k = min(m, n)
    u = np.linalg.qr(rng.standard_normal((m, k)))[0]
    v = np.linalg.qr(rng.standard_normal((n, k)))[0]
    return np.asarray((u * 2.0 ** (-np.arange(k) / 4)) @ v.T, np.float32)


W = _designed(64, 48)
STACKED = np.stack([_designed(64, 24, seed) for seed in range(4)])
NITER_TOLERANCE = 8 * 64 * EPS32 / (2 ** (-7 / 4) - 2 ** (-8 / 4))
"""How far the randomized SVD's values may move when XLA sums its products in another order: the backward errors
of a few float32 products (at most 64 * eps * |w|_2 each, |w|_2 = 1) over the gap sigma_8 - sigma_9 (0.03)."""


@functools.cache
def unsharded(scheme_id, stacked=False):
    w = STACKED if stacked else W
    return w, [np.asarray(x) for x in jinit.lora(KEY, jnp.asarray(w), RANK, alpha=ALPHA, **SCHEMES[scheme_id])]


def assert_rebuilds(out, w):
    a, b, residual = (np.asarray(x, np.float32) for x in out)
    merged = residual + SCALE * np.asarray(jnp.matmul(a, b, precision=HIGHEST))
    error = np.linalg.norm(merged.astype(np.float64) - w) / np.linalg.norm(w.astype(np.float64))
    assert error <= 1e-6, error


def assert_laid_out(out, sharding):
    spec = (*sharding.spec, *(None,) * (out.residual.ndim - len(sharding.spec)))
    batch, rows, cols = spec[:-2], spec[-2], spec[-1]
    for x, expected in zip(out, [P(*batch, rows, None), P(*batch, None, cols), P(*spec)], strict=True):
        assert x.sharding.is_equivalent_to(NamedSharding(sharding.mesh, expected), x.ndim), (x.sharding, expected)


@pytest.mark.parametrize("scheme_id", SCHEMES)
@pytest.mark.parametrize("spec_id", SPECS)
@pytest.mark.parametrize("mesh_id", MESHES)
def test_sharded_weight(mesh_id, spec_id, scheme_id):
    w, expected = unsharded(scheme_id)
    sharding = NamedSharding(MESHES[mesh_id], SPECS[spec_id])
    out = jinit.lora(KEY, jax.device_put(w, sharding), RANK, alpha=ALPHA, **SCHEMES[scheme_id])
    assert_laid_out(out, sharding)
    assert_rebuilds(out, w)
    for x, y in zip(out, expected, strict=True):
        np.testing.assert_array_equal(np.asarray(x), y)


@pytest.mark.parametrize("scheme_id", SCHEMES)
@pytest.mark.parametrize("mesh_id", MESHES)
def test_sharded_weight_under_jit(mesh_id, scheme_id):
    w, expected = unsharded(scheme_id)
    sharding = NamedSharding(MESHES[mesh_id], SPECS["both"])
    kwargs = SCHEMES[scheme_id]
    out = jax.jit(functools.partial(jinit.lora, rank=RANK, alpha=ALPHA, **kwargs))(KEY, jax.device_put(w, sharding))
    assert_rebuilds(out, w)
    assert out.residual.sharding.is_equivalent_to(sharding, 2)
    if MESHES[mesh_id].explicit_axes:  # the layout is part of the type: lora lays the adapters out as eagerly
        assert_laid_out(out, sharding)
    if mesh_id == "2x4_auto" and "niter" in kwargs:
        for x, y in zip(out, expected, strict=True):
            np.testing.assert_allclose(np.asarray(x), y, rtol=0, atol=NITER_TOLERANCE)
    else:
        for x, y in zip(out, expected, strict=True):
            np.testing.assert_array_equal(np.asarray(x), y)


@pytest.mark.parametrize("scheme_id", SCHEMES)
def test_sharded_batch_of_weights(scheme_id):
    """Stacked weights sharded over their batch axis and their out axis: each device factors its own matrices.

    With another number of matrices per device, XLA may sum products in another order. The adapters of the exact
    factorizations are bitwise the unsharded ones, those of the randomized SVD within NITER_TOLERANCE; the
    residual's ``a @ b`` is then off by at most twice the error bound of a float32 dot product of length RANK,
    ``RANK * eps * (|a| @ |b|)`` (Higham's gamma_n), times the scale, plus the adapters' own difference."""
    w, expected = unsharded(scheme_id, stacked=True)
    sharding = NamedSharding(MESHES["2x4_auto"], P("b", None, "a"))
    out = jinit.lora(KEY, jax.device_put(w, sharding), RANK, alpha=ALPHA, **SCHEMES[scheme_id])
    assert_laid_out(out, sharding)
    for i in range(w.shape[0]):
        assert_rebuilds([x[i] for x in out], w[i])
    a, b, residual = expected
    moved = NITER_TOLERANCE if "niter" in SCHEMES[scheme_id] else 0.0
    np.testing.assert_allclose(np.asarray(out.a), a, rtol=0, atol=moved)
    np.testing.assert_allclose(np.asarray(out.b), b, rtol=0, atol=moved)
    # |a' b' - a b| <= |a' - a| |b| + |a| |b' - b| + |a' - a| |b' - b|, elementwise
    moves = moved * (np.abs(a).sum(-1, keepdims=True) + np.abs(b).sum(-2, keepdims=True)) + RANK * moved**2
    rounding = 2 * RANK * EPS32 * (np.abs(a) @ np.abs(b))
    bound = SCALE * (rounding + moves) + EPS32 * np.abs(residual)
    assert (np.abs(np.asarray(out.residual) - residual) <= bound).all()
