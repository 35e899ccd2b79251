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
  in the same panel and tested the same way, for comparison only (it is biased: see docs/naming.md).

The script exits with an error if any KS p-value is below 1e-4 (with these fixed keys each is far above).

It writes one figure per family, small enough to read at the width of a documentation page, next to ``--out``
(``distributions-normal-uniform.png``, ``distributions-truncated.png``, ``distributions-variance-scaling.png``,
``distributions-orthogonal-sparse.png`` for ``--out distributions.png``), and every panel in one overview at
``--out`` itself.

Run: ``.venv/bin/python examples/plot_distributions.py [--out distributions.png]`` (a few seconds; needs the
``plot`` extra: ``pip install -e '.[plot]'`` in a checkout).
"""

import argparse
import dataclasses
import math
import textwrap
from pathlib import Path

import jax
import jax.numpy as jnp
import matplotlib
import numpy as np
from scipy import stats

import jinit

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # after choosing the backend
from matplotlib import ticker

MATRIX, CONV, SQUARE = (256, 384), (3, 3, 32, 384), (320, 320)  # ~100,000 samples each
MIN_P = 1e-4
PRESETS = {"glorot": (1.0, "fan_avg"), "he": (2.0, "fan_in"), "lecun": (1.0, "fan_in")}
TRUNCATED_STD = 0.87962566103423978  # the std of N(0, 1) truncated to [-2, 2]

CASES = [  # (family, title, initializer, shape); with the bfloat16 one, 15 panels
    ("normal-uniform", "normal(0.5, mean=0.2)", jinit.normal(0.5, mean=0.2), MATRIX),
    ("normal-uniform", "random_normal() (Keras's defaults)", jinit.random_normal(), MATRIX),
    ("normal-uniform", "uniform(0.5)", jinit.uniform(0.5), MATRIX),
    ("normal-uniform", "random_uniform(-0.05, 0.05)", jinit.random_uniform(), MATRIX),
    ("truncated", "truncated_normal(0.5, lower=-1, upper=2)", jinit.truncated_normal(0.5, lower=-1.0, upper=2.0),
     MATRIX),
    ("truncated", "trunc_normal(0.5, 1, a=-1, b=1.5) (PyTorch)", jinit.trunc_normal(0.5, 1.0, a=-1.0, b=1.5), MATRIX),
    ("variance-scaling", "variance_scaling(2, fan_in, normal)", jinit.variance_scaling(2.0, "fan_in", "normal"),
     MATRIX),
    ("variance-scaling", "variance_scaling(0.5, fan_out, truncated_normal)",
     jinit.variance_scaling(0.5, "fan_out", "truncated_normal"), MATRIX),
    ("variance-scaling", "variance_scaling(3, fan_geo_avg, uniform)",
     jinit.variance_scaling(3.0, "fan_geo_avg", "uniform"), MATRIX),
    ("variance-scaling", "he_normal() = (2, fan_in, truncated_normal) on 3x3x32x384", jinit.he_normal(), CONV),
    ("variance-scaling", "glorot_uniform() = (1, fan_avg, uniform)", jinit.glorot_uniform(), MATRIX),
    ("variance-scaling", "lecun_normal() = (1, fan_in, truncated_normal)", jinit.lecun_normal(), MATRIX),
    ("orthogonal-sparse", "orthogonal() on 320x320", jinit.orthogonal(), SQUARE),
    ("orthogonal-sparse", "sparse(0.1, 0.01), non-zero part", jinit.sparse(0.1, 0.01), MATRIX),
]  # fmt: skip
BFLOAT16 = ("truncated", "truncated_normal(1.0) in bfloat16", jinit.truncated_normal(1.0), MATRIX)
FAMILIES = ["normal-uniform", "truncated", "variance-scaling", "orthogonal-sparse"]  # one figure each, in this order


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


@dataclasses.dataclass
class Panel:
    """One initializer's samples, their exact distribution and KS p-value; JAX's own sample for the bfloat16 one."""

    family: str
    title: str
    x: np.ndarray
    dist: object
    p: float
    bins: object
    jax_x: np.ndarray | None = None
    jax_p: float | None = None


def summary(x):
    x = x.astype(np.float64)
    return f"(mean {x.mean():+.4f}, range [{x.min():.3f}, {x.max():.3f}], {len(np.unique(x))} distinct values)"


def plot(ax, panel, fontsize, wrap):
    """Draws one panel: the histogram of `panel.x`, its exact density, and JAX's bfloat16 sample where there is one."""
    x = panel.x
    pad = 0.05 * (x.max() - x.min())
    grid = np.linspace(x.min() - pad, x.max() + pad, 1000)
    ax.hist(x, bins=panel.bins, density=True, histtype="stepfilled", alpha=0.5, label="jinit samples")
    ax.plot(grid, panel.dist.pdf(grid), "k", lw=1, label="exact density")
    if panel.jax_x is not None:
        ax.hist(panel.jax_x, bins=panel.bins[::4], density=True, histtype="step", color="C3",
                label=f"jax.nn.initializers (KS p = {panel.jax_p:.0e})")  # fmt: skip
    ax.set_title(f"{textwrap.fill(panel.title, wrap)}\nKS p = {panel.p:.3f}", fontsize=fontsize)
    ax.tick_params(labelsize=fontsize - 1)
    ax.xaxis.set_major_locator(ticker.MaxNLocator(6))  # tick labels that do not run into each other


def figure(panels, ncols, size, fontsize, suptitle=None):
    """Panels in rows of `ncols`; a last panel alone in its row spans the row. `size` is one panel's, in inches."""
    wrap = int(size[0] * 72 / (0.6 * fontsize))  # the characters of a title line that fit a panel's width
    rows = math.ceil(len(panels) / ncols)
    fig = plt.figure(figsize=(ncols * size[0], rows * size[1]), layout="constrained")
    grid = fig.add_gridspec(rows, ncols)
    for i, panel in enumerate(panels):
        row, col = divmod(i, ncols)
        alone = i == len(panels) - 1 and col == 0
        ax = fig.add_subplot(grid[row, :] if alone else grid[row, col])
        plot(ax, panel, fontsize, wrap)
        if panel.jax_x is not None:
            ax.set_ylim(top=1.4 * ax.get_ylim()[1])  # room for the legend above the histograms
        if i == 0 or panel.jax_x is not None:
            ax.legend(fontsize=fontsize - 2, loc="upper left")
    if suptitle:
        fig.suptitle(suptitle, fontsize=fontsize + 2)
    return fig


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="distributions.png", help="the overview PNG; the families' go next to it")
    args = parser.parse_args()
    out = Path(args.out)

    keys = jax.random.split(jax.random.key(0), len(CASES) + 3)
    panels, failed = [], []
    for (family, title, init, shape), key in zip(CASES, keys, strict=False):
        x = np.asarray(init(key, shape), np.float64).ravel()
        dist = exact(init, shape)
        if init.name == "sparse":
            zeros = int((x == 0).sum())
            expected = math.ceil(init.config["sparsity"] * shape[0]) * shape[1]
            if zeros != expected:
                failed.append(f"{title}: {zeros} zeros, expected {expected}")
            x = x[x != 0]
        p = stats.kstest(x, dist.cdf).pvalue
        print(f"{title:58} {x.size:7d} samples  KS p = {p:.3f}")
        if p < MIN_P:
            failed.append(f"{title}: p = {p:.2e}")
        panels.append(Panel(family, title, x, dist, p, 100))

    family, title, init, shape = BFLOAT16
    dist = exact(init, shape)
    x = np.asarray(init(keys[-3], shape, jnp.bfloat16)).ravel()
    jax_x = np.asarray(jax.nn.initializers.truncated_normal(1.0)(keys[-3], shape, jnp.bfloat16)).ravel()
    p = stats.kstest(rounded_pit(x, dist, keys[-2]), "uniform").pvalue
    jax_p = stats.kstest(rounded_pit(jax_x, dist, keys[-1]), "uniform").pvalue
    print(f"{title:58} {x.size:7d} samples  KS p = {p:.3f}  {summary(x)}")
    print(f"{'  for comparison, jax.nn.initializers (not checked)':58} {jax_x.size:7d} samples  "
          f"KS p = {jax_p:.1e}  {summary(jax_x)}")  # fmt: skip
    if p < MIN_P or x.dtype != jnp.bfloat16 or np.abs(x.astype(np.float64)).max() > 2:
        failed.append(f"{title}: p = {p:.2e}, dtype {x.dtype}, {summary(x)}")
    bins = np.arange(-64, 65) / 32  # edges on the bfloat16 grid, so that every bin holds whole rounding cells
    panels.append(Panel(family, title, x.astype(np.float64), dist, p, bins, jax_x.astype(np.float64), jax_p))

    out.parent.mkdir(parents=True, exist_ok=True)
    for family in FAMILIES:  # two columns of panels that stay legible at a page's width
        path = out.with_name(f"{out.stem}-{family}{out.suffix}")
        fig = figure([panel for panel in panels if panel.family == family], ncols=2, size=(3.4, 2.7), fontsize=10)
        fig.savefig(path, dpi=150)
        plt.close(fig)
        print(f"Wrote {path}")
    fig = figure(panels, ncols=3, size=(4.6, 3.0), fontsize=10,
                 suptitle="jinit initializers: histograms of ~100,000 samples and their exact densities")  # fmt: skip
    fig.savefig(out, dpi=100)
    plt.close(fig)
    if failed:
        raise SystemExit(f"Not distributed as they should be: {'; '.join(failed)}")
    print(f"Wrote {out}")


if __name__ == "__main__":
    main()
