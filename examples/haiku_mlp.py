"""A Haiku MLP whose layers are initialized by jinit, trained by plain gradient descent.

Haiku calls an initializer as ``init(shape, dtype)`` and hands out randomness through ``hk.next_rng_key()``;
``jinit.haiku.to_haiku`` adapts a jinit initializer to that. The hidden ``hk.Linear`` layers use
``w_init=to_haiku(jinit.he_normal())`` (they feed ReLUs), the output layer ``to_haiku(jinit.glorot_uniform())``,
and every bias ``to_haiku(jinit.zeros)``. The adapted initializers are values too: equal when the jinit
initializers they wrap are equal.

The data and the training are those of flax_mlp.py: ``y = sin(x @ a) + 0.1 * noise`` with 8 inputs, 100 steps
of full-batch gradient descent written with `jax.grad` and `jax.jit` (no optax). The script prints the loss as it
goes down and exits with an error unless the final loss is below a quarter of the initial one.

Run: ``.venv/bin/python examples/haiku_mlp.py`` (a few seconds; needs ``pip install -e '.[haiku]'``).
"""

import haiku as hk
import jax
import jax.numpy as jnp

import jinit
from jinit.haiku import to_haiku

INPUTS, HIDDEN, SAMPLES, STEPS, LEARNING_RATE = 8, 64, 512, 100, 0.1
HIDDEN_INIT, OUTPUT_INIT = jinit.he_normal(), jinit.glorot_uniform()


def mlp(x):
    """Two ReLU hidden layers and a linear output."""
    for i in range(2):
        layer = hk.Linear(HIDDEN, w_init=to_haiku(HIDDEN_INIT), b_init=to_haiku(jinit.zeros), name=f"hidden_{i}")
        x = jax.nn.relu(layer(x))
    return hk.Linear(1, w_init=to_haiku(OUTPUT_INIT), b_init=to_haiku(jinit.zeros), name="output")(x)[:, 0]


def expected_std(name, shape):
    """What a parameter's std should be: 0 for a bias, sqrt(scale / n) for a weight, n the fan of its mode."""
    if name.endswith("/b"):
        return 0.0
    fan_in, fan_out = jinit.compute_fans(shape)
    return (2 / fan_in) ** 0.5 if "hidden" in name else (2 / (fan_in + fan_out)) ** 0.5  # he / glorot


def dataset(key):
    key_x, key_a, key_noise = jax.random.split(key, 3)
    x = jax.random.normal(key_x, (SAMPLES, INPUTS))
    a = jax.random.normal(key_a, (INPUTS,)) / jnp.sqrt(INPUTS)
    return x, jnp.sin(2 * x @ a) + 0.1 * jax.random.normal(key_noise, (SAMPLES,))


def main():
    same = to_haiku(jinit.he_normal()) == to_haiku(jinit.he_normal())
    print(f"to_haiku(jinit.he_normal()) == to_haiku(jinit.he_normal()): {same}")
    if not same:
        raise SystemExit("Two adapted initializers of equal jinit initializers compare unequal")

    key_data, key_init = jax.random.split(jax.random.key(0))
    x, y = dataset(key_data)
    model = hk.without_apply_rng(hk.transform(mlp))
    params = model.init(key_init, x)
    print(f"{'parameter':16} {'shape':>6} {'std':>7} {'expected':>8}")
    for path, p in jax.tree_util.tree_leaves_with_path(params):
        name = jax.tree_util.keystr(path, simple=True, separator="/")
        print(f"{name:16} {'x'.join(map(str, p.shape)):>6} {float(p.std()):7.4f} {expected_std(name, p.shape):8.4f}")

    def loss(params):
        return jnp.mean((model.apply(params, x) - y) ** 2)

    @jax.jit
    def step(params):
        value, grads = jax.value_and_grad(loss)(params)
        return jax.tree.map(lambda p, g: p - LEARNING_RATE * g, params, grads), value

    initial = float(loss(params))
    print(f"\nstep {0:3d}  loss {initial:.4f}")
    for i in range(1, STEPS + 1):
        params, _ = step(params)
        if i % 20 == 0:
            print(f"step {i:3d}  loss {float(loss(params)):.4f}")
    final = float(loss(params))
    if not final < initial / 4:
        raise SystemExit(f"The loss did not go down enough: {initial:.4f} -> {final:.4f}")
    print(f"Loss {initial:.4f} -> {final:.4f} after {STEPS} steps of gradient descent.")


if __name__ == "__main__":
    main()
