"""LoRA adapters for every kernel of a small model, with each of jinit's schemes, and their first gradients.

The model is a two-layer MLP whose parameters are a Flax-style dict (``{"dense_0": {"kernel", "bias"}, ...}``,
kernels ``(in, out)``), in plain JAX. `jinit.lora` gives each kernel adapters ``a: (in, rank)``, ``b: (rank, out)``
and the residual that replaces it, with ``residual + scale * a @ b == kernel``; each kernel's key comes from its
path (`jinit.path_key`). For every scheme the script checks that reconstruction, to a relative error of 1e-6
(products at HIGHEST precision, as `lora` computes the residual), and that the adapted model computes what the
base model does.

Then it takes the first gradient of a regression loss with respect to the adapters only (the residuals frozen, as
in fine-tuning): standard LoRA's ``a`` gets none (its ``b`` is zero), PiSSA's and OLoRA's both do. The script exits
with an error unless every check holds.

Run: ``.venv/bin/python examples/lora_adapters.py`` (a few seconds).
"""

import itertools
import sys

import jax
import jax.numpy as jnp
import numpy as np

import jinit

HIGHEST = jax.lax.Precision.HIGHEST
SIZES, RANK, ALPHA = (32, 64, 16), 4, 8.0
SCALE = ALPHA / RANK
SCHEMES = ("lora", "gaussian", "pissa", "olora")


def base_params(key):
    """A Flax-style MLP: He-normal kernels (in, out), zero biases."""
    params = {}
    for i, (n_in, n_out) in enumerate(itertools.pairwise(SIZES)):
        kernel = jinit.he_normal()(jinit.path_key(key, f"dense_{i}/kernel"), (n_in, n_out))
        params[f"dense_{i}"] = {"kernel": kernel, "bias": jnp.zeros(n_out)}
    return params


def mlp(params, x):
    for i in range(len(SIZES) - 1):
        layer = params[f"dense_{i}"]
        x = jnp.matmul(x, layer["kernel"], precision=HIGHEST) + layer["bias"]
        x = jax.nn.gelu(x) if i < len(SIZES) - 2 else x
    return x


def add_adapters(key, params, scheme):
    """Every kernel replaced by a `jinit.LoraInit` (a, b, residual); biases unchanged."""

    def adapt(path, x):
        name = jax.tree_util.keystr(path, simple=True, separator="/")
        if not name.endswith("kernel"):
            return x
        return jinit.lora(jinit.path_key(key, name), x, RANK, scheme=scheme, alpha=ALPHA)

    return jax.tree_util.tree_map_with_path(adapt, params)


def merged(adapted):
    """The kernels back from their adapters: residual + scale * a @ b."""

    def merge(x):
        if isinstance(x, jinit.LoraInit):
            return x.residual + SCALE * jnp.matmul(x.a, x.b, precision=HIGHEST)
        return x

    return jax.tree.map(merge, adapted, is_leaf=lambda x: isinstance(x, jinit.LoraInit))


def loss(trainable, adapted, x, y):
    """The mean squared error of the model whose adapters are `trainable` (name: (a, b)), residuals frozen."""
    tree = {
        name: {**layer, "kernel": layer["kernel"]._replace(a=trainable[name][0], b=trainable[name][1])}
        for name, layer in adapted.items()
    }
    return jnp.mean((mlp(merged(tree), x) - y) ** 2)


def relative_error(x, y):
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    return float(np.linalg.norm(x - y) / np.linalg.norm(y))


def main():
    key = jax.random.key(0)
    params = base_params(key)
    x = jax.random.normal(jax.random.key(1), (256, SIZES[0]))
    y_base = mlp(params, x)
    failures = []

    print(f"{'scheme':9} {'kernel':16} {'a':>9} {'b':>9} {'|scale*a@b|/|w|':>16} {'reconstruction':>15}")
    adapted_by_scheme = {}
    for scheme in SCHEMES:
        adapted = adapted_by_scheme[scheme] = add_adapters(jax.random.key(2), params, scheme)
        rebuilt = merged(adapted)
        for name, layer in adapted.items():
            a, b, _ = layer["kernel"]
            w = params[name]["kernel"]
            share = float(jnp.linalg.norm(SCALE * jnp.matmul(a, b, precision=HIGHEST)) / jnp.linalg.norm(w))
            error = relative_error(rebuilt[name]["kernel"], w)
            print(f"{scheme:9} {name + '/kernel':16} {a.shape!s:>9} {b.shape!s:>9} {share:16.3f} {error:15.1e}")
            if error > 1e-6:
                failures.append(f"{scheme} {name}: reconstruction error {error:.2e} > 1e-6")
        output_error = relative_error(mlp(rebuilt, x), y_base)
        if output_error > 1e-5:
            failures.append(f"{scheme}: the adapted model's output is off by {output_error:.2e}")

    # The first gradient of a loss, with the residuals frozen: LoRA's b = 0 gives a no gradient at the start (only
    # b moves at first), while PiSSA's and OLoRA's adapters both start on the weight's own directions.
    y_target = y_base + 0.1 * jax.random.normal(jax.random.key(3), y_base.shape)
    print(f"{'scheme':9} {'|grad a|':>10} {'|grad b|':>10}  (summed over the kernels)")
    for scheme, adapted in adapted_by_scheme.items():
        trainable = {name: (layer["kernel"].a, layer["kernel"].b) for name, layer in adapted.items()}
        grads = jax.grad(loss)(trainable, adapted, x, y_target)
        grad_a = sum(float(jnp.linalg.norm(g[0])) for g in grads.values())
        grad_b = sum(float(jnp.linalg.norm(g[1])) for g in grads.values())
        print(f"{scheme:9} {grad_a:10.2e} {grad_b:10.2e}")
        if (grad_a == 0) != (scheme in ("lora", "gaussian")) or grad_b == 0:
            failures.append(f"{scheme}: unexpected first gradients |grad a| = {grad_a}, |grad b| = {grad_b}")

    if failures:
        print("\n".join(failures))
        sys.exit(1)
    print(f"LoRA: {len(SCHEMES)} schemes x {len(params)} kernels rebuild their weights to 1e-6 and the model's output.")


if __name__ == "__main__":
    main()
