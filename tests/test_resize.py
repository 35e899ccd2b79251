"""`jinit.resize_rows`: the old rows bitwise kept; ``"mean_resizing"`` against a NumPy transcription of Hugging Face
transformers' formula (``_init_added_embeddings_weights_with_mean``: the mean, the covariance
``(X - mu).T @ (X - mu) / n`` scaled by 1e-9, ``mu + L @ z`` with the Cholesky factor ``L``, the mean where that
fails; ``_init_added_lm_head_bias_with_mean`` for a bias) and its samples against the exact multivariate normal
(whitened by the transcription's Cholesky factor and tested against scipy's normal and chi-squared laws);
``"mean"``; initializers; errors before any array."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import jinit
from jinit._src import engine, resize

KEY = jax.random.key(0)
EPSILON = 1e-9  # transformers' `epsilon` in `_init_added_embeddings_weights_with_mean`
FAMILY_ALPHA = 1e-3  # the probability that any statistical test of this file rejects a correct implementation
TESTS = 3  # the statistical tests below (whitened marginals, their correlations, the chi-squared norms)


def transformers_mean_cov(old):
    """transformers' mean and covariance of the old rows (each row flattened), in float64: ``mean_embeddings =
    torch.mean(w, axis=0)``, ``covariance = old_centered.T @ old_centered / old_num_tokens``."""
    w = np.asarray(old, np.float64).reshape(old.shape[0], -1)
    mean = w.mean(axis=0)
    centered = w - mean
    return mean, centered.T @ centered / w.shape[0]


def table(n, d, dtype=np.float32, seed=0):
    """Old rows with a non-zero mean and correlated coordinates."""
    rng = np.random.default_rng(seed)
    mixing = rng.normal(size=(d, d)) / math.sqrt(d) + np.eye(d)
    return jnp.asarray((rng.normal(size=(n, d)) @ mixing + rng.normal(size=d)).astype(dtype))


# ----------------------------------------------------------------------------------------- old rows are kept


@pytest.mark.parametrize("method", ["mean_resizing", "mean", jinit.normal(0.02), jinit.orthogonal(), jinit.zeros])
@pytest.mark.parametrize("dtype", [np.float32, jnp.bfloat16])
@pytest.mark.parametrize("axis", [0, -1])
def test_old_rows_are_kept_bitwise(method, dtype, axis):
    old = table(40, 6, dtype)
    old = old if axis == 0 else old.T
    new = jinit.resize_rows(KEY, old, 45, method, axis=axis)
    kept = new[:40] if axis == 0 else new[:, :40]
    assert new.dtype == old.dtype and new.shape == ((45, 6) if axis == 0 else (6, 45))
    np.testing.assert_array_equal(np.asarray(kept, np.float32), np.asarray(old, np.float32))
    assert (jax.lax.bitcast_convert_type(kept, jnp.uint16 if dtype == jnp.bfloat16 else jnp.uint32) ==
            jax.lax.bitcast_convert_type(old, jnp.uint16 if dtype == jnp.bfloat16 else jnp.uint32)).all()  # fmt: skip


@pytest.mark.parametrize("new_rows", [0, 7, 40])
def test_fewer_rows_cut_the_table(new_rows):
    old = table(40, 6)
    np.testing.assert_array_equal(jinit.resize_rows(None, old, new_rows), old[:new_rows])
    np.testing.assert_array_equal(jinit.resize_rows(KEY, old.T, new_rows, axis=1), old.T[:, :new_rows])


# ------------------------------------------------------------------------------- mean_resizing, as transformers


def test_mean_resizing_is_transformers_formula_exactly():
    """In float64 (rounding ~1e-16), each new row is ``mu + L @ z`` with the transcription's mean and Cholesky
    factor of ``1e-9 * cov`` and ``z`` the key's standard normals: what ``MultivariateNormal.sample`` computes
    (``loc + scale_tril @ eps``)."""
    with jax.enable_x64(True):
        old = table(50, 8, np.float64)
        new = np.asarray(jinit.resize_rows(KEY, old, 60))[50:]
        mean, covariance = transformers_mean_cov(old)
        factor = np.linalg.cholesky(EPSILON * covariance)
        z = np.asarray(jax.random.normal(KEY, (10, 8), jnp.float64))
        # the sample's deviation from the mean, in units of its scale, matches to ~1e-9 (the mean's rounding)
        scale = math.sqrt(EPSILON) * np.sqrt(np.diag(covariance))
        np.testing.assert_allclose((new - mean) / scale, (z @ factor.T) / scale, atol=1e-6)


def test_mean_resizing_samples_the_exact_multivariate_normal():
    """20,000 new rows of 8 coordinates, whitened by the transcription's ``L^-1 (x - mu)``, are independent
    standard normals. In float64: in float32 (as transformers computes) the rounding of the mean alone (~1e-7)
    is ~0.003 of the scale ``sqrt(1e-9) * std`` and the whitening amplifies it; see the float32 test below."""
    n, d, added = 400, 8, 20_000
    with jax.enable_x64(True):
        old = table(n, d, np.float64)
        new = np.asarray(jinit.resize_rows(KEY, old, n + added))[n:]
    mean, covariance = transformers_mean_cov(old)
    factor = np.linalg.cholesky(EPSILON * covariance)
    white = np.linalg.solve(factor, (new - mean).T).T  # (added, d): iid N(0, 1) if the law is right
    alpha = FAMILY_ALPHA / TESTS
    # each coordinate's marginal against scipy's standard normal (d KS tests)
    p_values = [stats.kstest(white[:, j], stats.norm.cdf).pvalue for j in range(d)]
    assert min(p_values) > alpha / d, p_values
    # the coordinates are uncorrelated: each of the d(d-1)/2 sample correlations is N(0, 1/added) asymptotically
    pairs = d * (d - 1) // 2
    bound = stats.norm.isf(alpha / pairs / 2) / math.sqrt(added)
    correlations = np.corrcoef(white.T)[np.triu_indices(d, 1)]
    assert np.abs(correlations).max() < bound, (np.abs(correlations).max(), bound)
    # the squared norms, jointly, against scipy's chi-squared with d degrees of freedom
    assert stats.kstest((white**2).sum(axis=1), stats.chi2(d).cdf).pvalue > alpha


def test_mean_resizing_in_float32():
    """float32 tables are computed in float32, as transformers does: the new rows scatter around the mean at the
    covariance's scale (every deviation within 6 of its standard deviations, which a correct sampler exceeds
    with probability below 1e-4 over these 8000 values, rounding included), and are not the mean itself."""
    old = table(400, 8)
    new = np.asarray(jinit.resize_rows(KEY, old, 1400), np.float64)[400:]
    mean, covariance = transformers_mean_cov(old)
    scale = np.sqrt(EPSILON * np.diag(covariance))
    assert (np.abs(new - mean) < 6 * scale).all()
    assert np.std(new, axis=0) == pytest.approx(scale, rel=0.2)


@pytest.mark.parametrize(
    "old",
    [
        np.asarray(table(1, 8)),  # one old row: a zero covariance
        np.concatenate([np.asarray(table(30, 7)), np.zeros((30, 1), np.float32)], axis=1),  # a zero coordinate
    ],
    ids=["one_row", "zero_coordinate"],
)
def test_mean_resizing_falls_back_to_the_mean_without_a_positive_definite_covariance(old):
    # transformers: `constraints.positive_definite.check(epsilon * covariance)` fails, every new row is the mean
    mean, covariance = transformers_mean_cov(old)
    assert np.linalg.eigvalsh(covariance).min() <= 0  # exactly singular: the zero row and column
    new = np.asarray(jinit.resize_rows(KEY, jnp.asarray(old), len(old) + 5))[len(old) :]
    np.testing.assert_allclose(new, np.broadcast_to(mean, new.shape), rtol=1e-6, atol=1e-7)
    assert (new == new[0]).all()


def test_a_bias_follows_transformers_bias_rule():
    """`_init_added_lm_head_bias_with_mean`: normal(mean, 1e-9 * std) with torch's std (n - 1), in float64 where
    1e-9 of a std is not lost to rounding; the standardized draws against scipy's normal."""
    with jax.enable_x64(True):
        old = jnp.asarray(np.random.default_rng(1).normal(0.3, 2.0, size=100))
        new = np.asarray(jinit.resize_rows(KEY, old, 100 + 5000))[100:]
    z = (new - np.mean(np.asarray(old))) / (EPSILON * np.std(np.asarray(old), ddof=1))
    assert stats.kstest(z, stats.norm.cdf).pvalue > FAMILY_ALPHA / TESTS
    # one old entry: no standard deviation, the mean
    np.testing.assert_array_equal(jinit.resize_rows(KEY, jnp.ones(1), 3), jnp.ones(3))


def test_mean_is_the_old_rows_mean():
    old = table(50, 4, seed=3).reshape(50, 2, 2)  # rows of rank 2: flattened to 4 coordinates
    new = np.asarray(jinit.resize_rows(None, old, 53, "mean"))
    mean, _ = transformers_mean_cov(old)
    np.testing.assert_allclose(new[50:].reshape(3, 4), np.broadcast_to(mean, (3, 4)), rtol=1e-6)
    head = np.asarray(jinit.resize_rows(None, old.transpose(1, 2, 0), 53, "mean", axis=2))  # vocabulary last
    np.testing.assert_array_equal(head[..., 50:], new[50:].transpose(1, 2, 0))


def test_randomness_only_from_the_key():
    old = table(50, 8)
    a, b = jinit.resize_rows(KEY, old, 60), jinit.resize_rows(KEY, old, 60)
    np.testing.assert_array_equal(a, b)
    assert not (jinit.resize_rows(jax.random.key(1), old, 60)[50:] == a[50:]).all()
    np.testing.assert_array_equal(jax.jit(jinit.resize_rows, static_argnums=(2, 3))(KEY, old, 60, "mean_resizing"), a)


# -------------------------------------------------------------------------------------------------- initializers


def test_an_elementwise_initializer_draws_at_the_resized_tables_fans():
    old = table(1000, 16)
    new = jinit.resize_rows(KEY, old, 1010, jinit.he_normal())[1000:]
    # he_normal: truncated normal of std sqrt(2 / fan_in), fan_in the resized table's 1010 rows (in_axis=-2), not 10
    at_block = jinit.he_normal()(KEY, (10, 16))  # the same draws at the block's own fan_in
    np.testing.assert_allclose(new, at_block * math.sqrt(10 / 1010), rtol=1e-5, atol=1e-7)
    # a law that does not depend on the shape gives bitwise the initializer's own sample of the new rows
    np.testing.assert_array_equal(jinit.resize_rows(KEY, old, 1010, jinit.normal(0.02))[1000:],
                                  jinit.normal(0.02)(KEY, (10, 16)))  # fmt: skip


def test_other_initializers_are_called_with_the_new_rows_shape():
    old = table(20, 16)
    np.testing.assert_array_equal(jinit.resize_rows(KEY, old, 28, jinit.orthogonal())[20:],
                                  jinit.orthogonal()(KEY, (8, 16)))  # fmt: skip
    jax_init = jax.nn.initializers.normal(0.5)
    np.testing.assert_array_equal(jinit.resize_rows(KEY, old, 28, jax_init)[20:], jax_init(KEY, (8, 16)))
    np.testing.assert_array_equal(jinit.resize_rows(None, old, 28, jinit.zeros)[20:], jnp.zeros((8, 16)))
    seeded = jinit.normal(1.0).with_seed(4)
    np.testing.assert_array_equal(jinit.resize_rows(None, old, 28, seeded)[20:], seeded(None, (8, 16)))


# ------------------------------------------------------------------------------------------------------- errors


@pytest.fixture
def nothing_computed(monkeypatch):
    def computed(*args, **kwargs):
        raise AssertionError("an array was computed before the error")

    for name in ("_mean_rows", "_join", "_cut"):
        monkeypatch.setattr(resize, name, computed)
    monkeypatch.setattr(engine, "draw", computed)


@pytest.mark.parametrize(
    "args, kwargs, error, match",
    [
        ((KEY, [[1.0, 2.0]], 3), {}, TypeError, "`table` must be a JAX or NumPy array"),
        ((KEY, jnp.float32(1.0), 3), {}, ValueError, "`table` must have rank >= 1"),
        ((KEY, jnp.ones((4, 2)), 5), {"axis": 2}, ValueError, "`axis` is out of range"),
        ((KEY, jnp.ones((4, 2)), -1), {}, ValueError, "`new_rows` must be a non-negative integer"),
        ((KEY, jnp.ones((4, 2)), 5.0), {}, TypeError, "`new_rows` must be an integer"),
        ((KEY, jnp.ones((4, 2)), 5, "median"), {}, ValueError, "`method` must be one of 'mean_resizing', 'mean'"),
        ((KEY, jnp.ones((4, 2)), 5, 3.0), {}, TypeError, "`method` must be one of"),
        ((KEY, jnp.ones((4, 2), jnp.int32), 5), {}, TypeError, "needs a real floating table"),
        ((KEY, jnp.ones((0, 2)), 5, "mean"), {}, ValueError, "has none along axis 0"),
        ((None, jnp.ones((4, 2)), 5), {}, TypeError, "`key` is needed"),
        ((7, jnp.ones((4, 2)), 5), {}, TypeError, "not an integer seed"),
        ((None, jnp.ones((4, 2)), 5, jinit.normal()), {}, TypeError, "`key` is needed"),
    ],
)
def test_errors_name_the_argument_before_computing(nothing_computed, args, kwargs, error, match):
    with pytest.raises(error, match=match) as info:
        jinit.resize_rows(*args, **kwargs)
    assert "Received" in str(info.value)


def test_an_initializer_of_another_shape_is_refused():
    with pytest.raises(ValueError, match="must return the new rows' shape"):
        jinit.resize_rows(KEY, jnp.ones((4, 2)), 6, lambda key, shape, dtype=None: jnp.ones((1, 2)))
