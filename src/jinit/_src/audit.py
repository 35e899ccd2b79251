"""Audits of initialized parameters: does each parameter have the statistics its initializer gives?

Initialization bugs are silent: a model whose residual projections never got their ``1 / sqrt(2 * n_layer)``
scaling (because a parameter-name match missed them) trains, only worse. `audit` compares each parameter's
measured mean and standard deviation with the exact ones of its initializer (`Distribution.moments`) and flags
those that differ by more than their sampling error allows, with the significance corrected for the number of
tests (Bonferroni), so that a correctly initialized model of any size is flagged with probability at most
`alpha`.

The parameters are reduced where they live (`jax.numpy` sums, sharded as the parameters are): only scalars
come back to the host.
"""

import dataclasses
import functools
import math
import re
import statistics
from collections.abc import Callable, Sequence
from fractions import Fraction
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.core import Tracer

from jinit._src import checks, distributions, provenance, tree
from jinit._src.base import Initializer
from jinit._src.compose import Packed, Scaled
from jinit._src.distributions import Distribution, Moments
from jinit._src.orthogonal import Orthogonal
from jinit._src.tree import ParamSpec


@dataclasses.dataclass(frozen=True)
class AuditRow:
    """One parameter of an `AuditReport`: what was measured, what was expected, and the verdict.

    Attributes:
      path: the parameter's path, as `jinit.path_key` writes it (``"h/0/attn/c_proj/kernel"``).
      shape: its shape.
      dtype: its dtype's name.
      init: the `repr` of the initializer it is compared with.
      size: its number of elements.
      expected_mean, expected_std: the mean and standard deviation its initializer gives (None without a
        reference).
      mean, std: the measured mean and (unbiased) standard deviation, computed in float32 (float64 for float64
        parameters) over its finite elements (None for complex parameters; `std` None for fewer than 2).
      z_mean, z_var: the z-scores of the mean and of the variance (None where not tested).
      flagged: whether the parameter fails the audit.
      reason: why it is flagged, or why it is not tested (empty when it passes its tests).
    """

    path: str
    shape: tuple[int, ...]
    dtype: str
    init: str
    size: int
    expected_mean: float | None
    expected_std: float | None
    mean: float | None
    std: float | None
    z_mean: float | None
    z_var: float | None
    flagged: bool
    reason: str


@dataclasses.dataclass(frozen=True)
class AuditReport:
    """The result of `jinit.audit`: one `AuditRow` per parameter, in the order of the parameters' tree.

    ``str(report)`` is an aligned table; `plot` draws the z-scores.

    Attributes:
      rows: the parameters' rows.
      alpha: the family-wise significance level.
      tests: the number of z-tests, over which `alpha` is divided.
      threshold: the critical ``|z|``, ``Phi^-1(1 - alpha / (2 * tests))`` (infinite without tests).
    """

    rows: tuple[AuditRow, ...]
    alpha: float
    tests: int
    threshold: float

    @property
    def flagged(self) -> tuple[str, ...]:
        """The paths of the flagged parameters."""
        return tuple(row.path for row in self.rows if row.flagged)

    @property
    def ok(self) -> bool:
        """Whether no parameter is flagged."""
        return not self.flagged

    def __str__(self) -> str:
        head = ("path", "shape", "dtype", "mean", "expected", "std", "expected", "z mean", "z var", "result", "init")
        table: list[tuple[str, ...]] = [head]
        for row in self.rows:
            result = ("FLAGGED: " if row.flagged else "ok" if not row.reason else "") + row.reason
            table.append(
                (
                    row.path,
                    "x".join(map(str, row.shape)) or "()",
                    row.dtype,
                    _number(row.mean),
                    _number(row.expected_mean),
                    _number(row.std),
                    _number(row.expected_std),
                    _z(row.z_mean),
                    _z(row.z_var),
                    result,
                    row.init,
                )
            )
        widths = [max(len(line[i]) for line in table) for i in range(len(head))]
        right = {1, 3, 4, 5, 6, 7, 8}  # numbers align on their right

        def aligned(line: tuple[str, ...]) -> str:
            cells = zip(line, widths, strict=True)
            return "  ".join(cell.rjust(w) if i in right else cell.ljust(w) for i, (cell, w) in enumerate(cells))

        lines = [aligned(line) for line in table]
        flagged = self.flagged
        lines.append(
            f"{len(self.rows)} parameters, {self.tests} z-tests at family-wise alpha={self.alpha:g} (Bonferroni: "
            f"flagged beyond |z| > {self.threshold:.2f}); {len(flagged)} flagged."
        )
        return "\n".join(line.rstrip() for line in lines)

    def plot(self, path: Any = None) -> Any:
        """Draws the z-scores of every tested parameter and the ratio of its measured to its expected std.

        Needs matplotlib (``pip install 'jinit[plot]'``), imported only here. The figure is a
        `matplotlib.figure.Figure`, made without `pyplot` (no global state, no display).

        Args:
          path: None, or a file name (or path-like) to save the figure to, in the format its suffix names.

        Returns:
          The `matplotlib.figure.Figure`.
        """
        try:
            from matplotlib.figure import Figure
        except ImportError as err:
            raise ImportError("`AuditReport.plot` needs matplotlib: pip install 'jinit[plot]'") from err
        rows = [row for row in self.rows if row.z_mean is not None or row.z_var is not None or row.flagged]
        x = np.arange(len(rows))
        fig = Figure(figsize=(max(6.0, 0.18 * len(rows) + 2), 6.5), layout="constrained")
        top, bottom = fig.subplots(2, 1, sharex=True)
        limit = self.threshold if math.isfinite(self.threshold) else None

        def clipped(values: list[float | None]) -> np.ndarray:
            bound = 3 * (limit or 5.0)
            return np.array([np.nan if v is None else max(-bound, min(bound, v)) for v in values])

        top.plot(x, clipped([row.z_mean for row in rows]), "o", ms=3, label="z of the mean")
        top.plot(x, clipped([row.z_var for row in rows]), "s", ms=3, label="z of the variance")
        if limit is not None:
            for sign in (-1, 1):
                top.axhline(sign * limit, color="crimson", lw=0.8, ls="--")
        top.set_ylabel("z-score")
        top.set_title(f"Audit: {len(self.flagged)} of {len(self.rows)} parameters flagged (alpha={self.alpha:g})")
        top.legend(loc="upper right", fontsize="small")
        ratios = [np.nan if row.std is None or not row.expected_std else row.std / row.expected_std for row in rows]
        colors = ["crimson" if row.flagged else "tab:blue" for row in rows]
        bottom.scatter(x, ratios, c=colors, s=10)
        bottom.axhline(1.0, color="gray", lw=0.8)
        bottom.set_ylabel("measured std / expected")
        bottom.set_xticks(x, [row.path for row in rows], rotation=90, fontsize=5)
        for label, row in zip(bottom.get_xticklabels(), rows, strict=True):
            if row.flagged:
                label.set_color("crimson")
        if path is not None:
            fig.savefig(path, dpi=150)
        return fig


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def _z(value: float | None) -> str:
    return "-" if value is None else f"{value:+.2f}"


# ------------------------------------------------------------------------------------------------ references


def _haar(scale: float, m: int) -> Moments:
    """An entry of a Haar-random (semi-)orthogonal matrix with ``m = max(rows, cols)``, times `scale`: a
    coordinate of a uniform point of the unit sphere in ``R^m``, with ``E x^2 = 1 / m``, ``E x^4 = 3 / (m (m + 2))``
    and ``E x^6 = 15 / (m (m + 2) (m + 4))``."""
    s2 = scale * scale
    return 0.0, s2 / m, 3 * s2**2 / (m * (m + 2)), 15 * s2**3 / (m * (m + 2) * (m + 4))


def _matrix(init: Orthogonal, shape: tuple[int, ...]) -> tuple[int, int, int]:
    """`orthogonal`'s column axis (non-negative), rows and columns for `shape`."""
    axis = init.column_axis % len(shape)
    return axis, math.prod(shape) // shape[axis], shape[axis]


def reference(init: Any, shape: tuple[int, ...], dtype: np.dtype) -> Moments | None:
    """The exact moments of an element of ``init(key, shape, dtype)`` for a random key, or None when jinit does
    not know them: an elementwise law's (`Distribution.central_moments`; in a float narrower than float32, those
    of the law rounded to it, `rounded_moments`), `orthogonal`'s (`_haar`), and those of `scaled` and `packed`
    made of them."""
    if not isinstance(init, Initializer):
        return None
    law = init.law(shape, dtype)
    if law is not None:
        return rounded_moments(law, dtype) if _rounds(dtype) else law.central_moments()
    if isinstance(init, Orthogonal) and math.prod(shape):
        _, rows, cols = _matrix(init, shape)
        return _haar(init.scale, max(rows, cols))
    if isinstance(init, Scaled):
        inner = reference(init.init, shape, dtype)
        if inner is None:
            return None
        f = init.factor
        return f * inner[0], f**2 * inner[1], f**4 * inner[2], f**6 * inner[3]
    if isinstance(init, Packed):
        return reference(init.init, init.part(shape)[1], dtype)
    return None


def _rounds(dtype: np.dtype) -> bool:
    """Whether a sample of `dtype` is computed in float32 and rounded to it (a real float narrower than 32 bits)."""
    return bool(jnp.issubdtype(dtype, jnp.floating)) and jnp.finfo(dtype).bits < 32


@functools.cache
def _grid(dtype: np.dtype) -> np.ndarray:
    """Every finite value of a float dtype of at most 16 bits, sorted, as float64 (one zero)."""
    bits = np.dtype(dtype).itemsize * 8
    unsigned = np.uint8 if bits == 8 else np.uint16
    with np.errstate(invalid="ignore"):  # the NaN bit patterns
        values = np.arange(2**bits, dtype=np.uint64).astype(unsigned).view(dtype).astype(np.float64)
    return np.unique(values[np.isfinite(values)])


@functools.lru_cache(maxsize=256)
def rounded_moments(law: Distribution, dtype: np.dtype) -> Moments:
    """The exact moments of an element of `law` as jinit samples it in `dtype`, a float narrower than float32:
    the real sample rounded to nearest in `dtype`, saturated at its finite extremes and clamped into the law's
    support, so each value ``v`` of `dtype` has the probability ``F(m+) - F(m-)`` of the interval that rounds to
    it (``F`` the law's `cdf`, ``m-`` and ``m+`` the midpoints to ``v``'s neighbours, open-ended at the extremes
    and at the bounds). No approximation but the sample's float32 step: its rounding bias (7.8e-5 on the mean of
    bfloat16 ``normal(0.01, mean=1.0)``) and its reduced variance (float8) are in the reference, not in the error.
    """
    values = _grid(dtype)
    lower, upper, upper_open = law.support(distributions.compute_dtype(dtype))
    keep = np.ones(len(values), bool)
    if lower is not None:
        keep &= _compare(values, lower, lambda v, b: v >= b)
    if upper is not None:
        keep &= _compare(values, upper, (lambda v, b: v < b) if upper_open else (lambda v, b: v <= b))
    values = values[keep]
    edges = (values[1:] + values[:-1]) / 2  # exact in float64: the grid has at most 11 significant bits
    cdf = np.array([law.cdf(float(e)) for e in edges])
    p = np.diff(np.concatenate(([0.0], cdf, [1.0])))
    p = np.clip(p, 0.0, None) / max(p.sum(), np.finfo(float).tiny)
    mean = float(np.dot(p, values))
    d = values - mean
    return mean, float(np.dot(p, d**2)), float(np.dot(p, d**4)), float(np.dot(p, d**6))


def _compare(values: np.ndarray, bound: Fraction, op: Callable[[Any, Any], Any]) -> np.ndarray:
    """``op(v, bound)`` for every float64 `values` against an exact `bound`: with the nearest double of `bound`,
    exact except where a value equals it, which is compared as a fraction."""
    near = float(bound)
    result = op(values, near)
    for i in np.flatnonzero(values == near):
        result[i] = op(Fraction(float(values[i])), bound)
    return result


def _power(moments: Moments) -> float:
    """The power ``p`` that makes ``(s^2 / sigma^2)^p`` symmetric to first order: ``p = 1 - k3 sigma^2 /
    (3 v^2)``, with ``v`` and ``k3`` the variance and third central moment of ``(x - mu)^2``: 1/3 for a normal
    (Wilson and Hilferty's cube root of a chi-square), about 0.76 for a uniform. Kept within [0.2, 1]."""
    _, mu2, mu4, mu6 = moments
    v = mu4 - mu2**2
    if not v > 0:
        return 1.0
    k3 = mu6 - 3 * mu2 * mu4 + 2 * mu2**3
    return min(1.0, max(0.2, 1 - k3 * mu2 / (3 * v**2)))


def _precision(dtype: np.dtype) -> tuple[float, float]:
    """The unit roundoff and the smallest subnormal of a floating dtype; zeros for other dtypes."""
    if not jnp.issubdtype(dtype, jnp.floating):
        return 0.0, 0.0
    info = jnp.finfo(dtype)
    return 2.0 ** -(int(info.nmant) + 1), float(info.smallest_subnormal)


def _rounding(dtype: np.dtype) -> tuple[float, float]:
    """`_precision` of a floating dtype narrower than float32, whose samples are computed in float32 and rounded
    once (so that their moments are the exact ones only up to that rounding); zeros otherwise."""
    if jnp.issubdtype(dtype, jnp.floating) and jnp.finfo(dtype).bits < 32:
        return _precision(dtype)
    return 0.0, 0.0


# ------------------------------------------------------------------------------------------------ kernels


def _wide(dtype: np.dtype) -> Any:
    """The dtype a parameter is measured in: float64 for float64, float32 for everything else."""
    return jnp.float64 if dtype == np.float64 else jnp.float32


@jax.jit
def _sums(x: jax.Array, shift: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """The sum and the sum of squares of ``x - shift`` over the finite elements of `x`, and the number of the
    others: three scalars, whatever the size and sharding of `x`."""
    wide = _wide(x.dtype)
    d = x.astype(wide) - shift.astype(wide)
    finite = jnp.isfinite(d)
    d = jnp.where(finite, d, jnp.zeros((), wide))
    return jnp.sum(d), jnp.sum(d * d), jnp.sum(~finite)


@jax.jit
def _differences(x: jax.Array, expected: jax.Array) -> jax.Array:
    """How many elements of `x` differ from `expected` (compared in the dtype both convert to exactly)."""
    common = jnp.promote_types(x.dtype, expected.dtype)
    return jnp.sum(x.astype(common) != expected.astype(common))


@functools.partial(jax.jit, static_argnames=("axis",))
def _gram_error(x: jax.Array, scale2: jax.Array, axis: int) -> jax.Array:
    """``max |G / scale^2 - I|``, G the Gram matrix of the orthonormal side of `x` seen as a matrix whose columns
    run along `axis` (``Q^T Q`` for a tall matrix, ``Q Q^T`` for a wide one).

    A contraction over the other axes, with no reshape of `x`: any sharding of `x` works, and the Gram matrix,
    small, is replicated (explicit mesh axes need to be told so).
    """
    wide = _wide(x.dtype)
    x = x.astype(wide)
    others = tuple(a for a in range(x.ndim) if a != axis)
    rows = math.prod(x.shape[a] for a in others)
    sharding = jax.typeof(x).sharding
    explicit = getattr(getattr(sharding, "mesh", None), "explicit_axes", ())
    out = jax.sharding.NamedSharding(sharding.mesh, jax.sharding.PartitionSpec()) if explicit else None
    contract = (others, others) if rows >= x.shape[axis] else ((axis,), (axis,))
    g = jnp.tensordot(x, x, contract, precision=jax.lax.Precision.HIGHEST, out_sharding=out)
    g = g.reshape(math.isqrt(g.size), -1)
    return jnp.max(jnp.abs(g / scale2.astype(wide) - jnp.eye(g.shape[0], dtype=wide)))


# ------------------------------------------------------------------------------------------------ audit


@dataclasses.dataclass
class _Plan:
    """What is done with one parameter, decided before anything is computed."""

    path: str
    x: Any
    spec: ParamSpec
    dtype: np.dtype | None  # the spec's resolved dtype (None: a foreign initializer without one)
    problems: list[str]  # reasons to flag, known before measuring
    note: str = ""  # why it is not tested
    moments: Moments | None = None  # z-tests against these
    exact: bool = False  # compared element by element with the initializer's own output
    gram: tuple[int, int, int, int] | None = None  # orthogonality: (column axis, k = max(rows, cols), packed axis,
    # count): each of `count` parts along the packed axis orthogonal
    rounded: bool = False  # the moments are those of the law rounded to the dtype (`rounded_moments`)
    resolution: float = 0.0  # how far the sampler's discreteness may move an element (`Distribution.resolution`)


def audit(
    params: Any,
    specs_or_rules: Any,
    *,
    alpha: float = 1e-3,
    orthogonality: bool = True,
    duplicates: bool = True,
    reference: Any = None,
    replicas: bool = True,
) -> AuditReport:
    """Audits initialized parameters against what their initializers should give; flags the ones that differ.

    Each parameter's measured mean and standard deviation are compared with the exact ones of its initializer.
    For ``n`` elements of mean ``mu``, variance ``sigma^2`` and fourth central moment ``mu4``, the standard
    errors are ``SE(mean) = sigma / sqrt(n)`` and ``SE(s^2) = sqrt((mu4 - sigma^4 (n - 3) / (n - 1)) / n)``
    (about ``sqrt((mu4 - sigma^4) / n)``), and each gives a z-test: ``z_mean = (mean - mu) / SE(mean)``, and
    ``z_var`` the same for the unbiased sample variance ``s^2``, computed on ``(s^2 / sigma^2)^p`` with the power
    ``p`` that cancels the skewness of ``s^2`` (1/3 for a normal, Wilson and Hilferty's; it holds the test's level
    down to a few elements, and for large ``n`` equals ``(s^2 - sigma^2) / SE(s^2)``). A parameter is flagged
    when ``|z| > Phi^-1(1 - alpha / (2 m))``, ``m`` the number of z-tests of the whole report (Bonferroni's
    correction, valid whatever the dependence between them): a correctly initialized model is flagged with
    probability at most `alpha`, however many parameters it has. A standard deviation off by 10% is caught in
    a normal parameter of about 1,000 elements (at ``z = 4.5``), a mean off by ``d * sigma`` from ``(z / d)^2``.

    The references:

    - an elementwise initializer (normal, uniform, truncated normal, variance scaling and its presets, PyTorch's,
      `scaled`, `packed`): the exact moments of its law (`law(shape, dtype)`);
    - `orthogonal`: an entry of a Haar-random matrix, mean 0 and variance ``scale^2 / max(rows, cols)``, rows and
      columns those of the flattened matrix; with `orthogonality`, also ``Q^T Q = scale^2 I`` (on the orthonormal
      side) within the rounding of the dtype, ``2 u + u^2 + 2 sqrt(k) t / scale + 4 sqrt(k) u_c`` (``u`` its
      unit roundoff, ``t`` its smallest subnormal, ``u_c`` that of the dtype measured in, ``k = max(rows, cols)``);
    - a deterministic initializer (`zeros`, `ones`, `constant`, `identity`, `dirac`, `stft`, or a law of
      variance 0): its own output, element by element; any difference is flagged;
    - anything else (`delta_orthogonal`, `sparse`, a function): a "no reference" row, never flagged.

    A parameter whose shape or dtype differs from its spec's, or that holds NaN or infinities, is flagged.
    Complex parameters are not audited (their rows say so). Parameters narrower than float32 (bfloat16, float16,
    float8) are measured in float32 against the exact moments of their law rounded to their dtype (every value
    of the dtype weighted by the probability of the interval that rounds to it): rounding shifts a bfloat16
    ``normal(0.01, mean=1.0)``'s mean by 7.8e-5 and shrinks a float8 Glorot's variance by 2%, which would
    otherwise be flagged at a few million elements; an `orthogonal` one's rounding, about ``u^2`` relative, is
    added to its standard errors. `scaled` and `packed` orthogonal parameters are checked for orthogonality too
    (each packed part on its own). Moments compare only the first two moments: a wrong family with the right mean and
    variance (a uniform where a normal of the same variance was meant) passes.

    Args:
      params: a pytree of arrays (JAX arrays of any sharding, or NumPy arrays), e.g. a Flax params dict.
      specs_or_rules: either a pytree of `jinit.ParamSpec` with the same paths as `params` (as given to
        `jinit.init_tree`), or rules as `jinit.init_like` takes them: ``(regex, initializer)`` pairs, the first
        regex that matches the whole path giving the initializer (the parameter's own shape and dtype are then
        expected).
      alpha: the family-wise significance level, in (0, 1): the probability that a correctly initialized model
        is flagged.
      orthogonality: a bool, whether to check that `orthogonal` parameters (also scaled or packed) are
        orthogonal (a matrix product each).
      duplicates: a bool, whether to flag random parameters bitwise equal to another, or perfectly correlated
        with one (``1 - |r| <= 1e-5``, or the square of the dtype's unit roundoff if larger, over their common
        prefix): drawn from one key. Parameters of 32 elements or more are compared.
      reference: None, or a pytree of arrays (the checkpoint the parameters were meant to replace, or the
        initialization before): a random parameter equal or perfectly correlated to the array at its path there
        (of the same shape) is flagged as not re-initialized.
      replicas: a bool, whether to flag a parameter whose replicas of a block differ, across this process's
        devices and across processes (with several processes, every process must call `audit`: one
        all-gather of checksums).

    Returns:
      An `AuditReport`: ``report.ok``, ``report.flagged`` (paths), ``str(report)`` (a table), ``report.plot()``.

    Raises:
      TypeError: a leaf of `params` is not an array, a leaf of the specs is not a `ParamSpec`, a rule is not a
        ``(regex, initializer)`` pair, `alpha` is not a number, or `orthogonality` not a bool.
      ValueError: `alpha` is not in (0, 1), or so small that ``alpha / (2 * tests)`` underflows; `params` and
        the specs have different paths; no rule matches some paths; two leaves share a path; a parameter's
        initializer rejects its spec's shape or dtype. All raised before anything is computed.

    Examples:
      >>> import jax, jinit
      >>> specs = {"w": jinit.ParamSpec((256, 256), jinit.he_normal()), "b": jinit.ParamSpec((256,), jinit.zeros)}
      >>> params = jinit.init_tree(jax.random.key(0), specs)
      >>> jinit.audit(params, specs).ok
      True
      >>> params["w"] = params["w"] * 1.1  # a scale off by 10%
      >>> jinit.audit(params, specs).flagged
      ('w',)
      >>> report = jinit.audit(params, [("b", jinit.zeros), ("w", jinit.scaled(jinit.he_normal(), 1.1))])
      >>> report.ok  # rules, as `init_like` takes them: what `w` now is
      True
      >>> print(report)  # doctest: +SKIP
      path    shape  dtype          mean  expected      std  expected  z mean  z var  result  init
      b         256  float32           0         0        0         0       -      -  ok      zeros
      w     256x256  float32  -6.507e-06         0  0.09712   0.09723   -0.02  -0.47  ok      scaled(init=he_normal(...
      2 parameters, 2 z-tests at family-wise alpha=0.001 (Bonferroni: flagged beyond |z| > 3.48); 0 flagged.
    """
    alpha = checks.number("alpha", alpha)
    if not 0 < alpha < 1:
        raise ValueError(f"Argument `alpha` must be in (0, 1). {checks.received('alpha', alpha)}")
    orthogonality = checks.boolean("orthogonality", orthogonality)
    duplicates = checks.boolean("duplicates", duplicates)
    replicas = checks.boolean("replicas", replicas)
    references = None if reference is None else dict(_arrays(reference, "reference"))
    plans = _plans(params, specs_or_rules, orthogonality)
    tests = sum(_tests(plan) for plan in plans)
    if tests and not alpha / (2 * tests) > 0:
        raise ValueError(
            f"Argument `alpha` is too small for {tests} z-tests: alpha / (2 * tests) underflows. "
            f"{checks.received('alpha', alpha)}"
        )
    threshold = -statistics.NormalDist().inv_cdf(alpha / (2 * tests)) if tests else math.inf
    results = jax.device_get([_dispatch(plan) for plan in plans])  # every reduction runs, then scalars come back
    rows = [_row(plan, result, threshold) for plan, result in zip(plans, results, strict=True)]
    random = [(plan.path, plan.x) for plan in plans if plan.moments is not None]
    found: dict[str, list[str]] = {}
    for extra in (
        provenance.duplicates(random) if duplicates else {},
        provenance.copies(random, references) if references is not None else {},
        provenance.replicas([(plan.path, plan.x) for plan in plans]) if replicas else {},
    ):
        for path, reasons in extra.items():
            found.setdefault(path, []).extend(reasons)
    rows = [_flag(row, found[row.path]) if row.path in found else row for row in rows]
    return AuditReport(tuple(rows), alpha, tests, threshold)


def _flag(row: AuditRow, reasons: list[str]) -> AuditRow:
    """`row` flagged for `reasons` too (after its own, if it was flagged already)."""
    own = row.reason if row.flagged else ""
    return dataclasses.replace(row, flagged=True, reason="; ".join([own, *reasons] if own else reasons))


def _arrays(params: Any, what: str = "params") -> list[tuple[str, Any]]:
    """`params`' (path, array) pairs, paths as `init_tree` names them; TypeError for a leaf that is no array."""
    flat, _ = tree._flatten(params, what)
    for path, leaf in flat:
        if isinstance(leaf, Tracer) or not isinstance(leaf, jax.Array | np.ndarray | np.generic):
            raise TypeError(
                f"Argument `{what}` must have array leaves (JAX or NumPy arrays, concrete: audit outside `jax.jit`); "
                f"the leaf at {checks.show(path)} is not. {checks.received(path, leaf)}"
            )
    return [(path, np.asarray(leaf) if isinstance(leaf, np.generic) else leaf) for path, leaf in flat]


def _is_rules(value: Any) -> bool:
    """Whether `specs_or_rules` is rules: a list or tuple without any `ParamSpec` in it."""
    if not isinstance(value, list | tuple):
        return False
    leaves = jax.tree_util.tree_leaves(value, is_leaf=lambda x: isinstance(x, ParamSpec | re.Pattern))
    return not any(isinstance(leaf, ParamSpec) for leaf in leaves)


def specs_like(arrays: Sequence[tuple[str, Any]], rules: Any) -> list[ParamSpec]:
    """The spec of each (path, array) pair, its initializer chosen by `rules` as `init_like` chooses it."""
    return tree.specs_like(arrays, checks.rules(rules))


def _specs(arrays: Sequence[tuple[str, Any]], specs: Any) -> list[ParamSpec]:
    """The spec of each (path, array) pair from a tree of specs with the same paths."""
    flat, _ = tree._flatten(specs, "specs_or_rules", is_leaf=lambda x: isinstance(x, ParamSpec))
    for path, spec in flat:
        if not isinstance(spec, ParamSpec):
            raise TypeError(
                "Argument `specs_or_rules` must be a pytree of `jinit.ParamSpec` with the paths of `params`, or a "
                f"sequence of (regex, initializer) rules; the leaf at {checks.show(path)} is not a ParamSpec. "
                f"{checks.received(path, spec)}"
            )
    by_path = dict(flat)
    paths = [path for path, _ in arrays]
    missing = [path for path in paths if path not in by_path]
    extra = [path for path in by_path if path not in set(paths)]
    if missing or extra:
        parts = [f"{len(missing)} parameter(s) have no spec: {', '.join(map(repr, missing))}"] if missing else []
        parts += [f"{len(extra)} spec(s) have no parameter: {', '.join(map(repr, extra))}"] if extra else []
        raise ValueError(
            f"`params` and `specs_or_rules` must have the same paths; {'; '.join(parts)}. "
            f"Received: {len(paths)} parameters and {len(flat)} specs"
        )
    return [by_path[path] for path in paths]


def _plans(params: Any, specs_or_rules: Any, orthogonality: bool) -> list[_Plan]:
    """Every check that needs no computation, and what to compute for each parameter."""
    arrays = _arrays(params)
    specs = specs_like(arrays, specs_or_rules) if _is_rules(specs_or_rules) else _specs(arrays, specs_or_rules)
    key = jax.random.key(0)
    checked = set()
    for (path, _), spec in zip(arrays, specs, strict=True):
        leaf = tree._Leaf(path, spec, None)
        if leaf.group not in checked:  # the initializer accepts its spec's shape and dtype (traced, not run)
            tree._check(leaf, key)
            checked.add(leaf.group)
    return [_plan(path, x, spec, orthogonality) for (path, x), spec in zip(arrays, specs, strict=True)]


def _plan(path: str, x: Any, spec: ParamSpec, orthogonality: bool) -> _Plan:
    init = spec.init
    if isinstance(init, Initializer):
        dtype = checks.resolve_dtype(init, spec.dtype)
    else:
        dtype = None if spec.dtype is None else np.dtype(spec.dtype)
    plan = _Plan(path, x, spec, dtype, [])
    if tuple(x.shape) != spec.shape:
        plan.problems.append(f"shape {tuple(x.shape)} is not the spec's {spec.shape}")
    if dtype is not None and x.dtype != dtype:
        plan.problems.append(f"dtype {x.dtype.name} is not the spec's {dtype.name}")
    if plan.problems and tuple(x.shape) != spec.shape:
        plan.note = "not compared"
    elif jnp.issubdtype(x.dtype, jnp.complexfloating) or (dtype is not None and dtype.kind == "c"):
        plan.note = "complex: not audited"
    elif not isinstance(init, Initializer):
        plan.note = "no reference"
    elif init.keyless:
        plan.exact = True
    elif math.prod(spec.shape) == 0:
        plan.note = "empty"
    else:
        assert dtype is not None  # a jinit initializer's dtype is resolved
        moments = reference(init, spec.shape, dtype)
        if moments is None:
            plan.note = "no reference"
        elif moments[1] == 0:
            plan.exact = True  # a law of variance 0 draws one value
        elif not _normal_enough(moments, math.prod(spec.shape)):
            plan.note = "too few of its rare values expected to test"
        else:
            plan.moments = moments
            law = init.law(spec.shape, dtype)
            plan.rounded = _rounds(dtype) and law is not None
            plan.resolution = 0.0 if law is None else law.resolution(dtype)
            plan.gram = _orthogonal(init, spec.shape) if orthogonality else None
    return plan


KURTOSIS_SAMPLES = 1000
"""A parameter is z-tested when it has at least this many elements per unit of its law's excess kurtosis."""


def _normal_enough(moments: Moments, n: int) -> bool:
    """Whether `n` elements of a law of these moments are enough for the z-tests' normal approximation.

    A law that is almost one value, with rare others (a narrow normal rounded to float8: ``1.0`` but for one
    element in ``1 / p``), has excess kurtosis about ``1 / p``; its sample mean and variance follow the count of
    the rare values, about Poisson of mean ``n p``, which is no normal while ``n p`` is small (none at all, the
    variance is 0: flagged at ``z = 5.6``). Requiring ``n >= 1000 * kurtosis`` (``n p >= 1000`` there) keeps the
    normal, uniform and truncated laws tested from a few elements on (their excess kurtosis is at most about 6).
    """
    _, var, mu4, _ = moments
    excess = mu4 / (var * var) - 3 if var > 0 else 0.0
    return n >= KURTOSIS_SAMPLES * excess


def _orthogonal(init: Initializer, shape: tuple[int, ...]) -> tuple[int, int, int, int] | None:
    """For `orthogonal`, `scaled` of it and `packed` of those: ``(column axis, max(rows, cols), packed axis,
    count)`` of each orthogonal part of a parameter of `shape` (count 1 and axis 0 when not packed); else None."""
    packed_axis, count = 0, 1
    while isinstance(init, Scaled | Packed):
        if isinstance(init, Packed):
            if count != 1:
                return None  # packed twice: parts of parts, not checked
            packed_axis, shape = init.part(shape)
            count = init.count
        init = init.init
    if not isinstance(init, Orthogonal) or not math.prod(shape):
        return None
    axis, rows, cols = _matrix(init, shape)
    return axis, max(rows, cols), packed_axis, count


def _tests(plan: _Plan) -> int:
    """The number of z-tests of a parameter: its mean, and its variance from 2 elements on."""
    if plan.moments is None:
        return 0
    n = math.prod(plan.spec.shape)
    return (n >= 1) + (n >= 2)


def _dispatch(plan: _Plan) -> dict[str, Any]:
    """Starts a parameter's reductions (asynchronously); the results are device scalars."""
    x = plan.x
    if jnp.issubdtype(x.dtype, jnp.complexfloating):
        return {}
    out: dict[str, Any] = {}
    shift = 0.0 if plan.moments is None else plan.moments[0]
    out["sums"] = _sums(x, jnp.asarray(shift, _wide(x.dtype)))
    if plan.exact:
        init = plan.spec.init
        assert isinstance(init, Initializer)  # only jinit's initializers are compared exactly
        sharding = getattr(x, "sharding", None)  # the expected values laid out as the parameter
        sharding = sharding if sharding is not None and len(sharding.device_set) > 1 else None
        key = None if init.keyless else jax.random.key(0)  # a law of variance 0 gives one value whatever the key
        expected = init(key, plan.spec.shape, plan.dtype, out_sharding=sharding)
        out["expected"] = _sums(expected, jnp.asarray(0.0, _wide(expected.dtype)))
        out["differences"] = _differences(x, expected)
    if plan.gram is not None and plan.moments is not None:
        axis, k, packed_axis, count = plan.gram
        scale2 = jnp.asarray(plan.moments[1] * k, _wide(x.dtype))  # variance * max(rows, cols)
        parts = jnp.split(x, count, axis=packed_axis) if count > 1 else [x]
        out["gram"] = jnp.max(jnp.stack([_gram_error(part, scale2, axis) for part in parts]))
    return out


def _row(plan: _Plan, result: dict[str, Any], threshold: float) -> AuditRow:
    x, spec = plan.x, plan.spec
    size = math.prod(x.shape)
    reasons = list(plan.problems)
    mean = std = expected_mean = expected_std = z_mean = z_var = None
    n = size
    if "sums" in result:
        shift = 0.0 if plan.moments is None else plan.moments[0]
        s1, s2, bad = (float(v) for v in result["sums"])
        n = size - int(bad)
        if bad:
            reasons.append(f"{int(bad)} non-finite value(s)")
        if n >= 1:
            mean = shift + s1 / n
        if n >= 2:
            std = math.sqrt(max(s2 - s1 * s1 / n, 0.0) / (n - 1))
    if plan.exact:
        e1, e2, _ = (float(v) for v in result["expected"])
        if size:
            expected_mean = e1 / size
        if size >= 2:
            expected_std = math.sqrt(max(e2 - e1 * e1 / size, 0.0) / (size - 1))
        differences = int(result["differences"])
        if differences:
            reasons.append(f"{differences} of {size} values differ from the initializer's")
    if plan.moments is not None and mean is not None:
        mu, var, mu4, _ = plan.moments
        expected_mean, expected_std = mu, math.sqrt(var)
        u, tiny = (0.0, 0.0) if plan.rounded else _rounding(x.dtype)
        sigma = math.sqrt(var)
        step = plan.resolution  # every element within `step` of the exact sampler's: so are the mean and the std
        mean_slack = u * u * (abs(mu) + sigma) + tiny / 2 + step
        z_mean = _ratio(mean - mu, math.sqrt(var / n + mean_slack**2))
        if abs(z_mean) > threshold:
            reasons.append(f"mean {z_mean:+.1f} standard errors off")
        if std is not None:
            se = math.sqrt(max(mu4 - var * var * (n - 3) / (n - 1), 0.0) / n) / var
            var_slack = (u * u * (var + mu * mu) + tiny * tiny / 12 + 2 * step * sigma + step * step) / var
            error = math.sqrt(se * se + var_slack**2)  # sampling error and rounding: the bias term takes the former
            p = _power(plan.moments)
            r = std * std / var
            z_var = _ratio(r**p - (1 + p * (p - 1) * se * se / 2), p * error)
            if abs(z_var) > threshold and std == 0:
                reasons.append(f"constant: every element is {_number(mean)} (was it drawn?)")
            elif abs(z_var) > threshold:
                reasons.append(f"std {std / sigma:.3g} times the expected, z={z_var:+.1f}")
        if "gram" in result and plan.gram is not None:
            k = plan.gram[1]
            u, tiny = _precision(x.dtype)
            u_c = _precision(np.dtype(_wide(x.dtype)))[0]
            scale = math.sqrt(var * k)
            tolerance = 2 * u + u * u + 2 * math.sqrt(k) * tiny / scale + 4 * math.sqrt(k) * u_c
            error = float(result["gram"])
            if not error <= tolerance:
                reasons.append(f"not orthogonal: max |Q^T Q / scale^2 - I| = {error:.2g} > {tolerance:.2g}")
    flagged = bool(reasons)
    if not flagged and plan.note:
        reasons.append(plan.note)
    return AuditRow(
        path=plan.path,
        shape=tuple(int(d) for d in x.shape),
        dtype=x.dtype.name,
        init=repr(spec.init),
        size=size,
        expected_mean=expected_mean,
        expected_std=expected_std,
        mean=mean,
        std=std,
        z_mean=z_mean,
        z_var=z_var,
        flagged=flagged,
        reason="; ".join(reasons),
    )


def _ratio(deviation: float, error: float) -> float:
    """``deviation / error``; infinite (signed) for a deviation without error, 0 for none."""
    if error > 0:
        return deviation / error
    return 0.0 if deviation == 0 else math.copysign(math.inf, deviation)
