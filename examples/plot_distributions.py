"""Histograms of every random jinit initializer against its exact density, and a Kolmogorov-Smirnov test of each.

One panel per initializer, ~100,000 samples each, with the exact scipy.stats density read from the initializer's
config (``init.config["stddev"]``, ...) drawn over the histogram:

- normal, random_normal: ``N(mean, stddev²)``; uniform: ``U[0, scale)``; random_uniform: ``U[minval, maxval)``;
- truncated_normal: ``mean + stddev·z``, ``z ~ N(0, 1)`` truncated to ``[lower, upper]`` (bounds in stddevs);
  trunc_normal: PyTorch's, ``N(mean, std²)`` truncated to the absolute bounds ``[a, b]``;
- variance_scaling, with ``n`` the fan of its mode (``jinit.compute_fans``): ``"normal"`` is ``N(0, scale/n)``,
  ``"truncated_normal"`` is ``N(0, 1)`` truncated to ±2 times ``sqrt(scale/n) / 0.8796…`` (the std of the
  truncated ``z``), ``"uniform"`` is ``U[-l, l)`` with ``l = sqrt(3·scale/n)``. glorot_*, he_* and lecun_* are
  presets of it (scale 1 fan_avg, 2 fan_in, 1 fan_in), shown on a convolution kernel and a matrix;
- orthogonal: an entry ``x`` of an n x n Haar-random orthogonal matrix has ``(x + 1) / 2 ~ Beta((n-1)/2, (n-1)/2)``;
- sparse: a point mass at 0 (exactly ``ceil(sparsity·rows)`` per column, checked) plus ``N(0, stddev²)``, whose
  non-zero part is plotted and tested;
- bfloat16 truncated_normal: jinit samples in float32 and rounds once, so the result is the exact distribution
  rounded to bfloat16 (unbiased, within ±2). Rounded values are discrete, so the test maps each sample ``v`` to
  ``F(lo) + u·(F(hi) - F(lo))``, ``[lo, hi]`` the interval that rounds to ``v`` and ``u ~ U(0, 1)``, which is
  exactly uniform if and only if the samples have the rounded distribution. JAX's own bfloat16 sample is drawn
  in the same panel and tested the same way, for comparison only (it is biased: see the README).

The script exits with an error if any KS p-value is below 1e-4 (with these fixed keys each is far above).

Run: ``.venv/bin/python examples/plot_distributions.py [--out distributions.png]`` (a few seconds; needs
``pip install jinit[plot]``).
"""

import argparse
import math
from pathlib import Path

import jax
import jax.numpy as jnp
import matplotlib
import numpy as np
from scipy import stats

import jinit

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # after choosing the backend

MATRIX, CONV, SQUARE = (256, 384), (3, 3, 32, 384), (320, 320)  # ~100,000 samples each
MIN_P = 1e-4
PRESETS = {"glorot": (1.0, "fan_avg"), "he": (2.0, "fan_in"), "lecun": (1.0, "fan_in")}
TRUNCATED_STD = 0.87962566103423978  # the std of N(0, 1) truncated to [-2, 2]

CASES = [  # (title, initializer, shape); the bfloat16 one makes 15 panels
    ("normal(0.5, mean=0.2)", jinit.normal(0.5, mean=0.2), MATRIX),
    ("random_normal() (Keras's defaults)", jinit.random_normal(), MATRIX),
    ("uniform(0.5)", jinit.uniform(0.5), MATRIX),
    ("random_uniform(-0.05, 0.05)", jinit.random_uniform(), MATRIX),
    ("truncated_normal(0.5, lower=-1, upper=2)", jinit.truncated_normal(0.5, lower=-1.0, upper=2.0), MATRIX),
    ("trunc_normal(0.5, 1, a=-1, b=1.5) (PyTorch)", jinit.trunc_normal(0.5, 1.0, a=-1.0, b=1.5), MATRIX),
    ("variance_scaling(2, fan_in, normal)", jinit.variance_scaling(2.0, "fan_in", "normal"), MATRIX),
    ("variance_scaling(0.5, fan_out, truncated_normal)", jinit.variance_scaling(0.5, "fan_out", "truncated_normal"),
     MATRIX),
    ("variance_scaling(3, fan_geo_avg, uniform)", jinit.variance_scaling(3.0, "fan_geo_avg", "uniform"), MATRIX),
    ("he_normal() = (2, fan_in, truncated_normal), 3x3x32x384", jinit.he_normal(), CONV),
    ("glorot_uniform() = (1, fan_avg, uniform)", jinit.glorot_uniform(), MATRIX),
    ("lecun_normal() = (1, fan_in, truncated_normal)", jinit.lecun_normal(), MATRIX),
    ("orthogonal() on 320x320", jinit.orthogonal(), SQUARE),
    ("sparse(0.1, 0.01), non-zero part", jinit.sparse(0.1, 0.01), MATRIX),
]  # fmt: skip
BFLOAT16 = ("truncated_normal(1.0) in bfloat16", jinit.truncated_normal(1.0), MATRIX)


def variance_scaling_args(init):
    """`(scale, mode, distribution)` of a variance_scaling initializer or one of its presets (he_normal, ...)."""
    if init.name == "variance_scaling":
        return init.config["scale"], init.config["mode"], init.config["distribution"]
    family, distribution = init.name.split("_")
    return *PRESETS[family], {"normal": "truncated_normal"}.get(distribution, distribution)


def exact(init, shape):
    """The exact distribution of one sample of `init` at `shape` (its continuous part, for sparse)."""
    c = init.config
    if init.name in ("normal", "random_normal"):
        return stats.norm(c["mean"], c["stddev"])
    if init.name == "uniform":
        return stats.uniform(0.0, c["scale"])
    if init.name == "random_uniform":
        return stats.uniform(c["minval"], c["maxval"] - c["minval"])
    if init.name == "truncated_normal":
        return stats.truncnorm(c["lower"], c["upper"], loc=c["mean"], scale=c["stddev"])
    if init.name == "trunc_normal":
        return stats.truncnorm((c["a"] - c["mean"]) / c["std"], (c["b"] - c["mean"]) / c["std"], c["mean"], c["std"])
    if init.name == "orthogonal":
        half = (max(shape) - 1) / 2
        return stats.beta(half, half, loc=-c["scale"], scale=2 * c["scale"])
    if init.name == "sparse":
        return stats.norm(0.0, c["stddev"])
    scale, mode, distribution = variance_scaling_args(init)
    fan_in, fan_out = jinit.compute_fans(shape, c["in_axis"], c["out_axis"], c["batch_axis"])
    n = max(1.0, {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2,
                  "fan_geo_avg": math.sqrt(fan_in * fan_out)}[mode])  # fmt: skip
    if distribution == "truncated_normal":
        return stats.truncnorm(-2.0, 2.0, scale=math.sqrt(scale / n) / TRUNCATED_STD)
    if distribution in ("normal", "untruncated_normal"):
        return stats.norm(0.0, math.sqrt(scale / n))
    limit = math.sqrt(3 * scale / n)
    return stats.uniform(-limit, 2 * limit)


def rounded_pit(x, dist, key):
    """Randomized probability integral transform of bfloat16 samples `x` of `dist` rounded to nearest: U(0, 1)."""
    up, down = (np.nextafter(x, np.array(s * np.inf, x.dtype)).astype(np.float64) for s in (1, -1))
    v = x.astype(np.float64)
    lo, hi = np.maximum((down + v) / 2, dist.support()[0]), np.minimum((v + up) / 2, dist.support()[1])
    u = np.asarray(jax.random.uniform(key, x.shape, jnp.float32), np.float64)
    return dist.cdf(lo) + u * (dist.cdf(hi) - dist.cdf(lo))


def summary(x):
    x = x.astype(np.float64)
    return f"(mean {x.mean():+.4f}, range [{x.min():.3f}, {x.max():.3f}], {len(np.unique(x))} distinct values)"


def plot(ax, title, x, dist, p, bins=100):
    grid_lo, grid_hi = x.min(), x.max()
    pad = 0.05 * (grid_hi - grid_lo)
    grid = np.linspace(grid_lo - pad, grid_hi + pad, 1000)
    ax.hist(x, bins=bins, density=True, histtype="stepfilled", alpha=0.5, label="jinit samples")
    ax.plot(grid, dist.pdf(grid), "k", lw=1, label="exact density")
    ax.set_title(f"{title}\nKS p = {p:.3f}", fontsize=9)
    ax.tick_params(labelsize=7)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="distributions.png", help="the PNG file to write")
    args = parser.parse_args()

    keys = jax.random.split(jax.random.key(0), len(CASES) + 3)
    fig, axes = plt.subplots(3, 5, figsize=(22, 11))
    failed = []
    for (title, init, shape), key, ax in zip(CASES, keys, axes.flat, strict=False):
        x = np.asarray(init(key, shape), np.float64).ravel()
        dist = exact(init, shape)
        if init.name == "sparse":
            zeros = int((x == 0).sum())
            expected = math.ceil(init.config["sparsity"] * shape[0]) * shape[1]
            if zeros != expected:
                failed.append(f"{title}: {zeros} zeros, expected {expected}")
            x = x[x != 0]
        p = stats.kstest(x, dist.cdf).pvalue
        print(f"{title:56} {x.size:7d} samples  KS p = {p:.3f}")
        if p < MIN_P:
            failed.append(f"{title}: p = {p:.2e}")
        plot(ax, title, x, dist, p)

    title, init, shape = BFLOAT16
    dist = exact(init, shape)
    x = np.asarray(init(keys[-3], shape, jnp.bfloat16)).ravel()
    jax_x = np.asarray(jax.nn.initializers.truncated_normal(1.0)(keys[-3], shape, jnp.bfloat16)).ravel()
    p = stats.kstest(rounded_pit(x, dist, keys[-2]), "uniform").pvalue
    jax_p = stats.kstest(rounded_pit(jax_x, dist, keys[-1]), "uniform").pvalue
    print(f"{title:56} {x.size:7d} samples  KS p = {p:.3f}  {summary(x)}")
    print(f"{'  for comparison, jax.nn.initializers (not checked)':56} {jax_x.size:7d} samples  "
          f"KS p = {jax_p:.1e}  {summary(jax_x)}")  # fmt: skip
    if p < MIN_P or x.dtype != jnp.bfloat16 or np.abs(x.astype(np.float64)).max() > 2:
        failed.append(f"{title}: p = {p:.2e}, dtype {x.dtype}, {summary(x)}")
    ax = axes.flat[len(CASES)]
    bins = np.arange(-64, 65) / 32  # edges on the bfloat16 grid, so that every bin holds whole rounding cells
    plot(ax, title, x.astype(np.float64), dist, p, bins=bins)
    ax.hist(jax_x.astype(np.float64), bins=bins[::4], density=True, histtype="step", color="C3",
            label=f"jax.nn.initializers (KS p = {jax_p:.0e})")  # fmt: skip
    ax.legend(fontsize=6, loc="upper left")

    fig.suptitle("jinit initializers: histograms of ~100,000 samples and their exact densities")
    fig.tight_layout()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=72)
    if failed:
        raise SystemExit(f"Not distributed as they should be: {'; '.join(failed)}")
    print(f"Wrote {args.out}")


if __name__ == "__main__":
    main()
