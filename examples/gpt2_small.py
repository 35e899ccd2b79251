"""GPT-2 small's 124 M parameters initialized with jinit, each checked against the statistics it should have.

The float32 parameters of GPT-2 small (vocabulary 50257, context 1024, width 768, 12 layers of 12 heads) in a
flat dict keyed by path. As in GPT-2, weights are normal with std 0.02, the position embedding 0.01 and the two
projections that write into the residual stream 0.02 / sqrt(2 * n_layer); biases are zeros and layer-norm
scales ones. `jinit.init_tree` initializes them all from one key: each parameter's key is derived from its path
(``jinit.path_key(key, path)``), and each distinct (initializer, shape) is compiled once, not once per layer.

Prints the embeddings, the first and last blocks and the final layer norm, and summarizes the other blocks; every
parameter is checked. For n normal samples the relative standard error of the sample std is about 1/sqrt(2n),
that of the mean std/sqrt(n): the script exits with status 1 if either is off by more than 6 of those.

Run: ``.venv/bin/python examples/gpt2_small.py`` (``make demo``).
"""

import math
import sys
import time

import jax
import numpy as np

import jinit

VOCAB, CONTEXT, WIDTH, LAYERS = 50257, 1024, 768, 12  # 12 heads, which no parameter's shape shows
STD, RESIDUAL_STD = 0.02, 0.02 / math.sqrt(2 * LAYERS)
SIGMAS = 6  # the tolerance, in standard errors
FLOOR = 1e-4  # the smallest relative tolerance on a std, far above float rounding


def dense(path, n_in, n_out, std):
    return [(f"{path}.kernel", (n_in, n_out), jinit.normal(std)), (f"{path}.bias", (n_out,), jinit.zeros)]


def layer_norm(path):
    return [(f"{path}.scale", (WIDTH,), jinit.ones), (f"{path}.bias", (WIDTH,), jinit.zeros)]


def gpt2_small():
    """`(path, shape, initializer)` of every parameter, in a stable order."""
    spec = [("wte", (VOCAB, WIDTH), jinit.normal(STD)), ("wpe", (CONTEXT, WIDTH), jinit.normal(0.01))]
    for i in range(LAYERS):
        spec += layer_norm(f"h.{i}.ln_1") + dense(f"h.{i}.attn.c_attn", WIDTH, 3 * WIDTH, STD)
        spec += dense(f"h.{i}.attn.c_proj", WIDTH, WIDTH, RESIDUAL_STD)
        spec += layer_norm(f"h.{i}.ln_2") + dense(f"h.{i}.mlp.c_fc", WIDTH, 4 * WIDTH, STD)
        spec += dense(f"h.{i}.mlp.c_proj", 4 * WIDTH, WIDTH, RESIDUAL_STD)
    return spec + layer_norm("ln_f")


def expected(init):
    """The mean and std of an initializer's samples, read from its arguments."""
    if init.name == "normal":
        return init.config["mean"], init.config["stddev"]
    return {"zeros": (0.0, 0.0), "ones": (1.0, 0.0)}[init.name]


def error(mean, std, size, mu, sigma):
    """The larger of the errors of the sample mean and std, as a fraction of its tolerance; constants are exact."""
    if sigma == 0:
        return 0.0 if std == 0 and mean == mu else math.inf
    std_tol = max(SIGMAS / math.sqrt(2 * size), FLOOR) * sigma
    return max(abs(std - sigma) / std_tol, abs(mean - mu) / (SIGMAS * sigma / math.sqrt(size)))


def main():
    spec, key = gpt2_small(), jax.random.key(0)
    start = time.perf_counter()
    params = jinit.init_tree(key, {path: jinit.ParamSpec(shape, init) for path, shape, init in spec})
    jax.block_until_ready(params)
    elapsed = time.perf_counter() - start

    print(f"{'parameter':22} {'shape':>13} {'dtype':>7} {'mean':>10} {'std':>9} {'expected':>9} {'err/tol':>9}")
    errors, hidden = {}, 0
    for path, _, init in spec:
        x = np.asarray(params[path])
        mean, std, (mu, sigma) = x.mean(dtype=np.float64), x.std(dtype=np.float64), expected(init)
        errors[path] = ratio = error(mean, std, x.size, mu, sigma)
        if path.startswith("h.") and not path.startswith(("h.0.", f"h.{LAYERS - 1}.")):
            hidden += 1
            continue
        if hidden and path == f"h.{LAYERS - 1}.ln_1.scale":
            print(f"{'...':22} blocks 1 to {LAYERS - 2}: {hidden} more parameters, checked like the others")
        shape = "x".join(map(str, x.shape))
        print(f"{path:22} {shape:>13} {x.dtype!s:>7} {mean:10.2e} {std:9.6f} {sigma:9.6f} {ratio:9.2f}")
    total = sum(x.size for x in params.values())
    print(f"\n{len(params)} parameters, {total:,} values ({total / 1e6:.1f} M), initialized in {elapsed:.2f} s.")
    print(f"Largest error: {max(errors.values()):.2f} of the tolerance ({SIGMAS} standard errors of mean and std).")
    if failed := [path for path, ratio in errors.items() if ratio > 1]:
        sys.exit(f"Off by more than the tolerance: {', '.join(failed)}")


if __name__ == "__main__":
    main()
