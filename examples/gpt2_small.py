"""GPT-2 small's 124 M parameters initialized with jinit, each checked against the statistics it should have.

The float32 parameters of GPT-2 small (vocabulary 50257, context 1024, width 768, 12 layers of 12 heads) in a
flat dict keyed by path. As in GPT-2, weights are normal with std 0.02, the position embedding 0.01 and the two
projections that write into the residual stream 0.02 / sqrt(2 * n_layer); biases are zeros and layer-norm
scales ones. `jinit.init_tree` initializes them all from one key: each parameter's key is derived from its path
(``jinit.path_key(key, path)``), and each distinct (initializer, shape) is compiled once, not once per layer.

Prints the embeddings, the first and last blocks and the final layer norm, and summarizes the other blocks; every
parameter is checked. For n normal samples the relative standard error of the sample std is about 1/sqrt(2n),
that of the mean std/sqrt(n): the script exits with status 1 if either is off by more than 6 of those.

Then the same model as JAX alone builds it, with the same initializers from `jax.nn.initializers` and each
parameter's key (``jinit.path_key(key, path)``, computed beforehand and not timed, where jinit's time includes
deriving them): leaf by leaf eagerly, the values jinit promises, and in one ``jax.jit`` over all of them (what
``jax.jit(model.init)`` does). All three times are first calls, compilation included, in this one process, jinit's
first (so XLA's one-time start-up counts against jinit). Every parameter must be bitwise JAX's eager value, or the
script exits with status 1.

Run: ``.venv/bin/python examples/gpt2_small.py`` (``make demo``).
"""

import functools
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


def jax_initializer(init):
    """The `jax.nn.initializers` initializer that `init` is."""
    if init.name == "normal":
        assert init.config["mean"] == 0.0  # JAX's normal has no mean
        return jax.nn.initializers.normal(init.config["stddev"])
    return {"zeros": jax.nn.initializers.zeros, "ones": jax.nn.initializers.ones}[init.name]


def jax_init(spec, keys):
    """The parameters as JAX alone initializes them, each from its path's key in `keys`."""
    return {path: jax_initializer(init)(keys[path], shape) for path, shape, init in spec}


def bitwise_equal(params, reference):
    """How many parameters of `params` are bitwise those of `reference`."""
    return sum(np.array_equal(x, reference[path]) for path, x in params.items())


def timed(f, *args):
    """`f(*args)` and the seconds it took, until its arrays are ready."""
    start = time.perf_counter()
    out = jax.block_until_ready(f(*args))
    return out, time.perf_counter() - start


def error(mean, std, size, mu, sigma):
    """The larger of the errors of the sample mean and std, as a fraction of its tolerance; constants are exact."""
    if sigma == 0:
        return 0.0 if std == 0 and mean == mu else math.inf
    std_tol = max(SIGMAS / math.sqrt(2 * size), FLOOR) * sigma
    return max(abs(std - sigma) / std_tol, abs(mean - mu) / (SIGMAS * sigma / math.sqrt(size)))


def main():
    spec, key = gpt2_small(), jax.random.key(0)
    params, elapsed = timed(jinit.init_tree, key, {path: jinit.ParamSpec(shape, init) for path, shape, init in spec})
    keys = jax.block_until_ready({path: jinit.path_key(key, path) for path, _, _ in spec})
    eager, eager_elapsed = timed(jax_init, spec, keys)
    same = bitwise_equal(params, eager)
    jitted, jit_elapsed = timed(jax.jit(functools.partial(jax_init, spec)), keys)
    jit_same = bitwise_equal(jitted, eager)
    del eager, jitted

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
    n = len(spec)
    print(f"\n{n} parameters, {total:,} values ({total / 1e6:.1f} M), first calls (compilation included) in seconds:")
    print(f"  {'jinit.init_tree':42} {elapsed:6.2f}")
    for how, seconds in [("leaf by leaf, eager", eager_elapsed), ("all in one jax.jit", jit_elapsed)]:
        print(f"  {'jax.nn.initializers, ' + how:42} {seconds:6.2f}  ({seconds / elapsed:.1f}x jinit's)")
    print(f"bitwise equal to JAX: {'yes' if same == n else 'NO'} ({same} of {n} parameters)")
    if jit_same != n:  # XLA, compiling each scale with its sampler, rounds some values differently
        print(f"  (JAX's own one jit is a few ulps off its eager values in {n - jit_same} of {n} parameters)")
    print(f"Largest error: {max(errors.values()):.2f} of the tolerance ({SIGMAS} standard errors of mean and std).")
    if failed := [path for path, ratio in errors.items() if ratio > 1]:
        sys.exit(f"Off by more than the tolerance: {', '.join(failed)}")
    if same != n:
        sys.exit(f"Only {same} of {n} parameters are bitwise JAX's.")


if __name__ == "__main__":
    main()
