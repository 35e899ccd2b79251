"""`jinit.lora`: LoRA, PiSSA and OLoRA adapters as PEFT initializes them, in JAX's (in, out) layout.

Reconstruction is checked for every scheme, shape and dtype; PiSSA and OLoRA against a NumPy transcription of
PEFT's `pissa_init` and `olora_init` (in PyTorch's (out, in) layout, in float64) and against what they promise (the
best rank-r approximation; orthonormal rows). Tolerances come from backward error bounds: a float32 SVD or QR is
exact for a weight perturbed by at most ``max(m, n) * eps * |w|_2`` (NumPy's `matrix_rank` uses this bound), which
moves a singular value by at most as much (Weyl) and a singular vector by at most that over its gap to the
neighbouring singular values (Wedin); the designed weights below have known gaps and condition numbers.
"""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import jinit
from jinit._src import adapters

KEY = jax.random.key(0)
HIGHEST = jax.lax.Precision.HIGHEST
EPS32 = float(np.finfo(np.float32).eps)
BF16_U = float(jnp.finfo(jnp.bfloat16).eps) / 2  # unit roundoff of round-to-nearest into bfloat16
RECONSTRUCTION = 1e-6  # relative Frobenius error of residual + scale * a @ b in float32 (the promise)

SCHEMES = {  # id: keyword arguments of `lora`
    "lora": {"scheme": "lora"},
    "gaussian": {"scheme": "gaussian"},
    "pissa": {"scheme": "pissa"},
    "pissa_niter": {"scheme": "pissa", "niter": 2},
    "olora": {"scheme": "olora"},
}
SHAPES = {"square": (48, 48), "tall": (64, 24), "wide": (24, 64), "batched": (3, 20, 30)}
RANK = 8


def _weight(shape, seed=1, dtype=jnp.float32):
    return jnp.asarray(np.random.default_rng(seed).standard_normal(shape), dtype)


@jax.jit
def _merged(out, scale):
    """``residual + scale * a @ b`` in float32, the product at HIGHEST precision, as `lora` computes it."""
    a, b, residual = (x.astype(jnp.float32) for x in out)
    return residual + scale * jnp.matmul(a, b, precision=HIGHEST)


def _relative_error(x, w):
    x, w = np.asarray(x, np.float64), np.asarray(w, np.float64)
    return np.linalg.norm(x - w) / np.linalg.norm(w)


def _designed(m, n, singular_values, seed=0):
    """An (m, n) float32 weight with the given singular values (in float64 before the cast)."""
    rng = np.random.default_rng(seed)
    k = min(m, n)
    u = np.linalg.qr(rng.standard_normal((m, k)))[0]
    v = np.linalg.qr(rng.standard_normal((n, k)))[0]
    return jnp.asarray((u * singular_values) @ v.T, jnp.float32)


# ------------------------------------------------------------------------- PEFT's code, transcribed


def peft_pissa(w_torch, r, scaling):
    """`peft.tuners.lora.layer.LoraLayer.pissa_init` (``init_lora_weights="pissa"``) on an (out, in) weight."""
    V, S, Uh = np.linalg.svd(w_torch, full_matrices=False)
    Vr, Sr, Uhr = V[:, :r], S[:r] / scaling, Uh[:r]
    lora_A = np.diag(np.sqrt(Sr)) @ Uhr
    lora_B = Vr @ np.diag(np.sqrt(Sr))
    return lora_A, lora_B, w_torch - scaling * lora_B @ lora_A


def peft_olora(w_torch, r, scaling):
    """`peft.tuners.lora.layer.LoraLayer.olora_init` on an (out, in) weight."""
    Q, R = np.linalg.qr(w_torch)
    lora_A, lora_B = R[:r], Q[:, :r]
    return lora_A, lora_B, w_torch - scaling * lora_B @ lora_A


def _signs(a, reference):
    """The sign of each column of `a` that best matches `reference` (singular vectors and QR factors are
    unique up to the signs of their columns)."""
    return np.where(np.sum(a * reference, axis=0) < 0, -1.0, 1.0)


# ---------------------------------------------------------------------------------------- reconstruction


@pytest.mark.parametrize("shape", SHAPES.values(), ids=SHAPES)
@pytest.mark.parametrize("kwargs", SCHEMES.values(), ids=SCHEMES)
def test_reconstruction(kwargs, shape):
    w = _weight(shape)
    out = jinit.lora(KEY, w, RANK, alpha=16.0, **kwargs)
    *batch, n_in, n_out = shape
    assert isinstance(out, jinit.LoraInit)
    assert out.a.shape == (*batch, n_in, RANK) and out.b.shape == (*batch, RANK, n_out)
    assert out.residual.shape == shape
    assert out.a.dtype == out.b.dtype == out.residual.dtype == jnp.float32
    assert _relative_error(_merged(out, 16.0 / RANK), w) <= RECONSTRUCTION
    if kwargs["scheme"] in ("lora", "gaussian"):  # b = 0: the weight is unchanged and the adapter adds nothing
        assert (out.b == 0).all() and (out.residual == w).all()
        assert not (out.a == 0).all()
    else:
        assert not (out.residual == w).all()


@pytest.mark.parametrize("kwargs", SCHEMES.values(), ids=SCHEMES)
def test_scales(kwargs):
    """PiSSA folds the scale into a and b (scale * a @ b is the same for every alpha); OLoRA does not (a and b do
    not depend on alpha); both as PEFT. The residual always follows: residual + scale * a @ b is the weight."""
    w = _weight(SHAPES["tall"])
    products = []
    for alpha, rslora, scale in [(None, False, 1.0), (4.0, False, 0.5), (32.0, True, 32.0 / math.sqrt(RANK))]:
        out = jinit.lora(KEY, w, RANK, alpha=alpha, rslora=rslora, **kwargs)
        assert _relative_error(_merged(out, scale), w) <= RECONSTRUCTION
        products.append((out, scale * np.matmul(np.asarray(out.a, np.float64), np.asarray(out.b, np.float64))))
    (first, p1), *others = products
    for out, p in others:
        if kwargs["scheme"] == "pissa":
            tolerance = 8 * max(w.shape) * EPS32 * np.linalg.norm(p1, 2)  # two float32 SVDs and square roots
            np.testing.assert_allclose(p, p1, rtol=0, atol=tolerance)
        else:
            np.testing.assert_array_equal(out.a, first.a)
            np.testing.assert_array_equal(out.b, first.b)


# -------------------------------------------------------------------------------- low-precision weights


@pytest.mark.parametrize("adapter_dtype", [None, jnp.float32], ids=["bfloat16_adapters", "float32_adapters"])
@pytest.mark.parametrize("kwargs", SCHEMES.values(), ids=SCHEMES)
def test_bfloat16_weight(kwargs, adapter_dtype):
    """A bfloat16 weight is factored exactly (cast to float32); the residual is computed from the adapters as
    returned, so the only error is its own rounding to bfloat16: at most BF16_U * |residual| (Frobenius)."""
    w = _weight(SHAPES["tall"], dtype=jnp.bfloat16)
    out = jinit.lora(KEY, w, RANK, alpha=16.0, dtype=adapter_dtype, **kwargs)
    expected_dtype = jnp.bfloat16 if adapter_dtype is None else jnp.float32
    assert out.a.dtype == out.b.dtype == expected_dtype and out.residual.dtype == jnp.bfloat16
    residual_norm = np.linalg.norm(np.asarray(out.residual, np.float64)) / (1 - BF16_U)
    bound = BF16_U * residual_norm / np.linalg.norm(np.asarray(w, np.float64)) + RECONSTRUCTION
    assert _relative_error(_merged(out, 2.0), w.astype(jnp.float32)) <= bound
    if adapter_dtype is not None:  # the same factorization as of the weight cast to float32
        exact = jinit.lora(KEY, w.astype(jnp.float32), RANK, alpha=16.0, **kwargs)
        np.testing.assert_array_equal(out.a, exact.a)
        np.testing.assert_array_equal(out.b, exact.b)


# ------------------------------------------------------------------------------------------------ PiSSA


@pytest.mark.parametrize("shape", [(48, 48), (64, 24), (24, 64)], ids=["square", "tall", "wide"])
def test_pissa_is_the_best_rank_r_approximation(shape):
    """scale * a @ b has the top RANK singular values of the weight (NumPy's, in float64), and the residual
    has the others: by Weyl's inequality each is off by at most 2 * max(m, n) * eps * sigma_1 (the SVD's
    backward error, then the rounding of the adapters and of the subtraction)."""
    w = _weight(shape, seed=2)
    scale = 16.0 / RANK
    a, b, residual = jinit.lora(None, w, RANK, scheme="pissa", alpha=16.0)
    sigma = np.linalg.svd(np.asarray(w, np.float64), compute_uv=False)
    tolerance = 2 * max(shape) * EPS32 * sigma[0]
    product = scale * np.asarray(a, np.float64) @ np.asarray(b, np.float64)
    np.testing.assert_allclose(np.linalg.svd(product, compute_uv=False)[:RANK], sigma[:RANK], rtol=0, atol=tolerance)
    tail = np.linalg.svd(np.asarray(residual, np.float64), compute_uv=False)
    np.testing.assert_allclose(tail[: len(sigma) - RANK], sigma[RANK:], rtol=0, atol=tolerance)
    # a's columns and b's rows are orthogonal, of squared norms sigma_i / scale
    gram = np.asarray(a, np.float64).T @ np.asarray(a, np.float64)
    np.testing.assert_allclose(gram, np.diag(sigma[:RANK] / scale), rtol=0, atol=tolerance / scale)
    gram = np.asarray(b, np.float64) @ np.asarray(b, np.float64).T
    np.testing.assert_allclose(gram, np.diag(sigma[:RANK] / scale), rtol=0, atol=tolerance / scale)


@pytest.mark.parametrize("shape", [(48, 48), (64, 24), (24, 64)], ids=["square", "tall", "wide"])
def test_pissa_matches_peft(shape):
    """PEFT's pissa_init on the (out, in) weight w.T gives lora_A = a.T, lora_B = b.T, and the residual's
    transpose. Singular values 2, ..., 1 evenly spaced: each singular vector is within max(m, n) * eps * 2 / gap
    (Wedin) of NumPy's, up to its sign; a column of a is that vector times sqrt(sigma / scale) <= 1."""
    k, alpha = min(shape), 16.0
    singular_values = np.linspace(2.0, 1.0, k)
    w = _designed(*shape, singular_values)
    a, b, residual = (np.asarray(x, np.float64) for x in jinit.lora(None, w, RANK, scheme="pissa", alpha=alpha))
    lora_A, lora_B, residual_torch = peft_pissa(np.asarray(w, np.float64).T, RANK, alpha / RANK)
    tolerance = 4 * max(shape) * EPS32 * singular_values[0] / (1.0 / (k - 1))
    signs = _signs(a, lora_A.T)
    np.testing.assert_allclose(a * signs, lora_A.T, rtol=0, atol=tolerance)
    np.testing.assert_allclose(b * signs[:, None], lora_B.T, rtol=0, atol=tolerance)
    np.testing.assert_allclose(residual, residual_torch.T, rtol=0, atol=tolerance)


def test_pissa_niter_finds_a_low_rank_weight():
    """The randomized SVD finds the exact range of a weight of rank RANK: its singular values are NumPy's within
    the backward error of its (3 + 4 * niter) float32 steps, each at most max(m, n) * eps * sigma_1."""
    rng = np.random.default_rng(3)
    w = jnp.asarray(rng.standard_normal((60, RANK)) @ rng.standard_normal((RANK, 40)), jnp.float32)
    sigma = np.linalg.svd(np.asarray(w, np.float64), compute_uv=False)
    for niter in (0, 2):
        a, b, residual = jinit.lora(KEY, w, RANK, scheme="pissa", niter=niter)
        product = np.asarray(a, np.float64) @ np.asarray(b, np.float64)
        tolerance = (3 + 4 * niter) * max(w.shape) * EPS32 * sigma[0]
        np.testing.assert_allclose(np.linalg.svd(product, compute_uv=False)[:RANK], sigma[:RANK], atol=tolerance)
        assert np.linalg.norm(np.asarray(residual, np.float64), 2) <= tolerance


# ------------------------------------------------------------------------------------------------ OLoRA


@pytest.mark.parametrize("shape", [(48, 48), (64, 24), (24, 64)], ids=["square", "tall", "wide"])
def test_olora_matches_peft(shape):
    """PEFT's olora_init on w.T: b = Q[:, :r].T has orthonormal rows, a = R[:r].T is lower triangular (exact
    zeros above the diagonal), and both are NumPy's up to the signs of Q's columns. The designed weight's
    condition number is 2, so Householder QR's backward error moves Q and R by at most 2 * max(m, n) * eps
    (times |w|_2 = 2 for R)."""
    alpha = 16.0
    w = _designed(*shape, np.linspace(2.0, 1.0, min(shape)))
    a, b, residual = (np.asarray(x, np.float64) for x in jinit.lora(None, w, RANK, scheme="olora", alpha=alpha))
    tolerance = 2 * max(shape) * EPS32 * 2.0
    np.testing.assert_allclose(b @ b.T, np.eye(RANK), rtol=0, atol=tolerance)
    assert (np.triu(a, k=1) == 0).all()
    lora_A, lora_B, residual_torch = peft_olora(np.asarray(w, np.float64).T, RANK, alpha / RANK)
    signs = _signs(b.T, lora_B)
    np.testing.assert_allclose(b * signs[:, None], lora_B.T, rtol=0, atol=tolerance)
    np.testing.assert_allclose(a * signs, lora_A.T, rtol=0, atol=2 * tolerance)
    np.testing.assert_allclose(residual, residual_torch.T, rtol=0, atol=4 * tolerance * alpha / RANK)


# --------------------------------------------------------------------------- jit, keys, batches, inputs


@pytest.mark.parametrize("kwargs", SCHEMES.values(), ids=SCHEMES)
def test_jit_equals_eager(kwargs):
    w = _weight((3, 20, 30))
    jitted = jax.jit(functools.partial(jinit.lora, rank=RANK, alpha=4.0, **kwargs))
    for x, y in zip(jitted(KEY, w), jinit.lora(KEY, w, RANK, alpha=4.0, **kwargs), strict=True):
        np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("kwargs", SCHEMES.values(), ids=SCHEMES)
def test_keys(kwargs):
    """Same key, same values; another key, another `a` for the random schemes and none for the others."""
    w = _weight(SHAPES["tall"])
    first = jinit.lora(jax.random.key(5), w, RANK, **kwargs)
    again = jinit.lora(jax.random.key(5), w, RANK, **kwargs)
    other = jinit.lora(jax.random.key(6), w, RANK, **kwargs)
    for x, y in zip(first, again, strict=True):
        np.testing.assert_array_equal(x, y)
    random = kwargs["scheme"] in ("lora", "gaussian") or "niter" in kwargs
    assert (not (first.a == other.a).all()) == random
    if not random:  # the key is not needed, and not used
        for x, y in zip(first, jinit.lora(None, w, RANK, **kwargs), strict=True):
            np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("kwargs", [SCHEMES["pissa"], SCHEMES["olora"]], ids=["pissa", "olora"])
def test_batched_is_each_matrix(kwargs):
    w = np.asarray(_weight(SHAPES["batched"]))
    batched = [np.asarray(x) for x in jinit.lora(None, w, RANK, **kwargs)]
    for i in range(w.shape[0]):
        alone = jinit.lora(None, w[i], RANK, **kwargs)
        for x, y in zip(batched, alone, strict=True):
            np.testing.assert_allclose(x[i], y, rtol=0, atol=4 * max(w.shape) * EPS32)


def test_inputs_and_results():
    """A NumPy weight gives JAX arrays; LoraInit is a pytree of three leaves; rank = min(in, out) works."""
    w = np.asarray(_weight((12, 6)))
    out = jinit.lora(None, w, 6, scheme="pissa")
    assert all(isinstance(x, jax.Array) for x in out) and out._fields == ("a", "b", "residual")
    assert len(jax.tree.leaves(out)) == 3
    assert _relative_error(_merged(out, 1.0), w) <= RECONSTRUCTION
    a, b, residual = jinit.lora(KEY, w, 1)
    assert a.shape == (12, 1) and b.shape == (1, 6) and isinstance(residual, jax.Array)
    for kwargs in SCHEMES.values():  # a zero weight (rank 0): finite adapters, a zero residual
        out = jinit.lora(KEY, jnp.zeros((5, 4)), 2, **kwargs)
        assert all(bool(jnp.isfinite(x).all()) for x in out) and (out.residual == 0).all()
    empty = jinit.lora(None, jnp.zeros((0, 5, 4)), 2, scheme="olora")
    assert empty.a.shape == (0, 5, 2) and empty.b.shape == (0, 2, 4) and empty.residual.shape == (0, 5, 4)


# ------------------------------------------------------------------------------------------- statistics

# (id, weight shape, rank, scheme, the exact distribution of every element of a)
DISTRIBUTIONS = [
    ("lora", (1024, 96), 64, "lora", stats.uniform(-1 / math.sqrt(1024), 2 / math.sqrt(1024))),
    ("lora_batched", (4, 256, 96), 64, "lora", stats.uniform(-1 / 16, 2 / 16)),  # fan_in 256: batch not counted
    ("gaussian", (1024, 96), 64, "gaussian", stats.norm(0, 1 / 64)),
]
FAMILY_ALPHA = 1e-3  # the probability that any KS test of this file rejects a correct implementation
ALPHA = FAMILY_ALPHA / len(DISTRIBUTIONS)  # Bonferroni


@pytest.mark.parametrize("shape, rank, scheme, dist", [d[1:] for d in DISTRIBUTIONS], ids=[d[0] for d in DISTRIBUTIONS])
def test_distribution_of_a(shape, rank, scheme, dist):
    """65,536 elements of a against scipy's exact distribution (KS), within its support."""
    a = np.asarray(jinit.lora(jax.random.key(11), jnp.zeros(shape), rank, scheme=scheme).a, np.float64).ravel()
    assert a.size >= 2**16
    assert stats.kstest(a, dist.cdf).pvalue > ALPHA
    low, high = dist.support()
    assert low <= a.min() and a.max() < high


# ------------------------------------------------------------------------------------------------ errors

W = jnp.ones((4, 6))
ERRORS = [
    ("weight_list", lambda: jinit.lora(KEY, [[1.0, 2.0]], 1), TypeError, r"`weight`.*array.*Received: weight=\[\["),
    (
        "weight_int",
        lambda: jinit.lora(KEY, np.ones((4, 6), np.int32), 1),
        TypeError,
        r"`weight`.*weight\.dtype='int32'",
    ),
    ("weight_complex", lambda: jinit.lora(KEY, W + 0j, 1), TypeError, r"`weight`.*weight\.dtype='complex64'"),
    (
        "weight_vector",
        lambda: jinit.lora(KEY, np.ones(4, np.float32), 1),
        ValueError,
        r"`weight`.*2 axes.*weight\.shape=\(4,\)",
    ),
    ("rank_zero", lambda: jinit.lora(KEY, W, 0), ValueError, r"`rank`.*= 4.*rank=0, weight\.shape=\(4, 6\)"),
    ("rank_too_large", lambda: jinit.lora(KEY, W, 5), ValueError, r"`rank`.*min\(in, out\) = 4.*rank=5"),
    ("rank_float", lambda: jinit.lora(KEY, W, 2.0), TypeError, r"`rank`.*integer.*rank=2\.0"),
    ("rank_bool", lambda: jinit.lora(KEY, W, True), TypeError, r"`rank`.*rank=True"),
    ("scheme", lambda: jinit.lora(KEY, W, 2, scheme="loftq"), ValueError, r"`scheme`.*'pissa'.*scheme='loftq'"),
    ("alpha_zero", lambda: jinit.lora(KEY, W, 2, alpha=0), ValueError, r"`alpha`.*positive.*alpha=0"),
    ("alpha_inf", lambda: jinit.lora(KEY, W, 2, alpha=math.inf), ValueError, r"`alpha`.*finite.*alpha=inf"),
    ("alpha_str", lambda: jinit.lora(KEY, W, 2, alpha="8"), TypeError, r"`alpha`.*alpha='8'"),
    ("rslora_int", lambda: jinit.lora(KEY, W, 2, rslora=1), TypeError, r"`rslora`.*bool.*rslora=1"),
    ("niter_negative", lambda: jinit.lora(KEY, W, 2, scheme="pissa", niter=-1), ValueError, r"`niter`.*niter=-1"),
    ("niter_olora", lambda: jinit.lora(KEY, W, 2, scheme="olora", niter=2), ValueError, r"niter=2, scheme='olora'"),
    ("niter_float", lambda: jinit.lora(KEY, W, 2, scheme="pissa", niter=1.5), TypeError, r"`niter`.*niter=1\.5"),
    ("dtype_int", lambda: jinit.lora(KEY, W, 2, dtype=jnp.int32), TypeError, r"`dtype`.*floating"),
    ("dtype_unknown", lambda: jinit.lora(KEY, W, 2, dtype="float33"), TypeError, r"`dtype`.*dtype='float33'"),
    ("key_missing", lambda: jinit.lora(None, W, 2), TypeError, r"`key`.*scheme 'lora'.*Received: key=None"),
    ("key_missing_niter", lambda: jinit.lora(None, W, 2, scheme="pissa", niter=1), TypeError, r"`key`.*`niter`"),
    ("key_int", lambda: jinit.lora(0, W, 2), TypeError, r"`key`.*jax\.random\.key\(0\)"),
    ("key_batch", lambda: jinit.lora(jax.random.split(KEY), W, 2, scheme="olora"), TypeError, r"`key`.*batch"),
]


@pytest.mark.parametrize("call, error, match", [e[1:] for e in ERRORS], ids=[e[0] for e in ERRORS])
def test_errors_before_any_array(call, error, match, no_arrays, monkeypatch):
    def computed(*args, **kwargs):
        raise AssertionError("an adapter was computed before the error")

    monkeypatch.setattr(adapters, "_factorize", computed)
    monkeypatch.setattr(adapters, "_random", computed)
    with pytest.raises(error, match=match):
        call()


def test_traced_alpha_is_refused():
    with pytest.raises(TypeError, match=r"`alpha`.*concrete.*static"):
        jax.jit(lambda alpha: jinit.lora(None, W, 2, scheme="pissa", alpha=alpha))(2.0)
