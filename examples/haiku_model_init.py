"""A Haiku transformer-style model, unchanged, initialized by jinit's engine with `jinit.haiku.init`.

The model is written as any Haiku user writes it, with jinit initializers adapted by `jinit.haiku.to_haiku` and
a batch-norm-like state (`hk.transform_with_state`). `jinit.haiku.init(f, key, x)` returns bitwise what
`f.init(key, x)` returns, parameters and state: every jinit parameter is drawn by the engine, once per distinct
(initializer, shape, dtype) group, and the forward pass's arithmetic never runs. With `path_keys=True` each
parameter's key is instead `jinit.path_key(key, "module/name")`, so adding a layer leaves the others unchanged;
the script checks that too, and exits with an error unless every check holds.

Run: ``.venv/bin/python examples/haiku_model_init.py`` (a few seconds; needs ``pip install -e '.[haiku]'``).
"""

import haiku as hk
import jax
import jax.numpy as jnp

import jinit
import jinit.haiku
from jinit.haiku import to_haiku

WIDTH, LAYERS = 128, 4


def model(x, layers=LAYERS):
    x = hk.Linear(WIDTH, w_init=to_haiku(jinit.glorot_uniform()), name="embed")(x)
    for i in range(layers):
        h = hk.LayerNorm(-1, True, True, name=f"ln_{i}")(x)
        h = hk.Linear(4 * WIDTH, w_init=to_haiku(jinit.he_normal()), name=f"up_{i}")(h)
        x = x + hk.Linear(WIDTH, w_init=to_haiku(jinit.orthogonal()), name=f"down_{i}")(jax.nn.gelu(h))
    count = hk.get_state("count", (), jnp.int32, init=jnp.zeros)  # state: computed as Haiku computes it
    hk.set_state("count", count + 1)
    return hk.Linear(10, name="head")(x)  # Haiku's default truncated normal: computed as Haiku computes it


def main():
    f = hk.transform_with_state(model)
    key, x = jax.random.key(0), jnp.ones((2, 32))
    params, state = jinit.haiku.init(f, key, x)
    reference = f.init(key, x)
    if not all(jax.tree.leaves(jax.tree.map(jnp.array_equal, (params, state), reference))):
        raise SystemExit("jinit.haiku.init differs from f.init")
    print(f"{sum(p.size for p in jax.tree.leaves(params)):,} parameters, bitwise f.init's")

    deeper = hk.transform_with_state(lambda x: model(x, LAYERS + 1))
    stable, _ = jinit.haiku.init(f, key, x, path_keys=True)
    stable_deeper, _ = jinit.haiku.init(deeper, key, x, path_keys=True)
    if not all(jnp.array_equal(stable[name]["w"], stable_deeper[name]["w"]) for name in ("embed", "up_0", "down_3")):
        raise SystemExit("path_keys=True: adding a layer changed the others")
    print("Haiku model initialized by jinit: bitwise f.init; with path_keys, a new layer leaves the others unchanged.")


if __name__ == "__main__":
    main()
