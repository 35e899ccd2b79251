"""Re-initializing an Equinox MLP with jinit: orthogonal weights and zero biases, chosen by parameter path.

``eqx.nn.MLP`` initializes its ``Linear`` layers like PyTorch (uniform in ±1/sqrt(in)). To change that, take
the model's array leaves with ``eqx.filter(model, eqx.is_array)`` (the other leaves become None, which is an
empty subtree, so every remaining leaf is an array), and give them to ``jinit.init_like`` with rules matched
against each leaf's path, ``jax.tree_util.keystr(path, simple=True, separator="/")``: for an MLP these are
"layers/0/weight", "layers/0/bias", ... The new arrays go back into the model with ``eqx.tree_at`` (or, for the
whole tree at once, ``eqx.combine(new, model)``).

Each parameter's key is derived from the root key and its path (``jinit.path_key``), so the same key gives the
same weights however deep or wide the model is. The script checks that every weight is orthogonal (the Gram
matrix over its shorter side is the identity: Equinox weights are (out, in)), that every bias is zero and that
the model still runs, and exits with an error otherwise.

Run: ``.venv/bin/python examples/equinox_reinit.py`` (a few seconds; needs ``pip install -e '.[equinox]'``).
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

import jinit

IN_SIZE, OUT_SIZE, WIDTH, DEPTH, BATCH = 8, 4, 32, 3, 16
RULES = [(r"layers/\d+/weight", jinit.orthogonal()), (r"layers/\d+/bias", jinit.zeros)]


def gram_error(w):
    """The largest deviation of the Gram matrix over the shorter side of `w` from the identity."""
    w = np.asarray(w, np.float64)
    gram = w @ w.T if w.shape[0] <= w.shape[1] else w.T @ w
    return float(np.abs(gram - np.eye(len(gram))).max())


def main():
    key_model, key_init, key_x = jax.random.split(jax.random.key(0), 3)
    model = eqx.nn.MLP(IN_SIZE, OUT_SIZE, WIDTH, DEPTH, key=key_model)
    params = eqx.filter(model, eqx.is_array)
    leaves = jax.tree_util.tree_leaves_with_path(params)
    paths = [jax.tree_util.keystr(path, simple=True, separator="/") for path, _ in leaves]
    print(f"Paths of the MLP's arrays: {', '.join(paths)}\n")

    new = jinit.init_like(key_init, params, RULES)
    model = eqx.tree_at(lambda m: [layer.weight for layer in m.layers], model, [layer.weight for layer in new.layers])
    model = eqx.tree_at(lambda m: [layer.bias for layer in m.layers], model, [layer.bias for layer in new.layers])

    print(f"{'layer':9} {'weight':>7} {'gram':>5} {'|W W^T - I|':>12} {'max |bias|':>11}")
    failed = []
    for i, layer in enumerate(model.layers):
        rows, cols = layer.weight.shape
        error, bias = gram_error(layer.weight), float(jnp.abs(layer.bias).max())
        print(f"layers/{i}  {rows:>3}x{cols:<3} {'WW^T' if rows <= cols else 'W^TW':>5} {error:12.2e} {bias:11.1f}")
        if error > 1e-5 or bias != 0:
            failed.append(f"layers/{i}")

    x = jax.random.normal(key_x, (BATCH, IN_SIZE))
    y = jax.vmap(model)(x)
    print(f"\nThe re-initialized model maps a batch {x.shape} to {y.shape}, std {float(y.std()):.3f}.")
    if y.shape != (BATCH, OUT_SIZE) or not bool(jnp.isfinite(y).all()):
        failed.append("the forward pass")
    if failed:
        raise SystemExit(f"Not as expected: {', '.join(failed)}")
    print(f"All {len(model.layers)} weights are orthogonal and all biases zero.")


if __name__ == "__main__":
    main()
