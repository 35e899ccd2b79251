"""A Flax linen MLP whose layers are initialized by jinit, trained by plain gradient descent.

The hidden Dense layers use ``kernel_init=jinit.he_normal()`` (they feed ReLUs), the output layer
``jinit.glorot_uniform()``, and every bias ``jinit.zeros``: jinit initializers are Flax's ``init(key, shape,
dtype)``, so they go straight into ``nn.Dense``. Because they are values, two modules built with equal
initializers compare (and hash) equal, which Flax's own closures cannot give.

The data are a synthetic regression, ``y = sin(x @ a) + 0.1 * noise`` with 8 inputs, drawn with jax.random. The
model is trained for 100 steps of full-batch gradient descent written with `jax.grad` and `jax.jit` (no optax).
The script prints the loss as it goes down and exits with an error unless the final loss is below a quarter of
the initial one.

Run: ``.venv/bin/python examples/flax_mlp.py`` (a few seconds; needs ``pip install -e '.[flax]'``).
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

import jinit

INPUTS, HIDDEN, SAMPLES, STEPS, LEARNING_RATE = 8, 64, 512, 100, 0.1
HIDDEN_INIT, OUTPUT_INIT = jinit.he_normal(), jinit.glorot_uniform()


class MLP(nn.Module):
    """Two ReLU hidden layers and a linear output."""

    hidden: int = HIDDEN

    @nn.compact
    def __call__(self, x):
        for i in range(2):
            x = nn.relu(nn.Dense(self.hidden, kernel_init=HIDDEN_INIT, bias_init=jinit.zeros, name=f"hidden_{i}")(x))
        return nn.Dense(1, kernel_init=OUTPUT_INIT, bias_init=jinit.zeros, name="output")(x)[:, 0]


def expected_std(name, shape):
    """What a parameter's std should be: 0 for a bias, sqrt(scale / n) for a kernel, n the fan of its mode."""
    if name.endswith("bias"):
        return 0.0
    fan_in, fan_out = jinit.compute_fans(shape)
    return (2 / fan_in) ** 0.5 if "hidden" in name else (2 / (fan_in + fan_out)) ** 0.5  # he / glorot


def dataset(key):
    key_x, key_a, key_noise = jax.random.split(key, 3)
    x = jax.random.normal(key_x, (SAMPLES, INPUTS))
    a = jax.random.normal(key_a, (INPUTS,)) / jnp.sqrt(INPUTS)
    return x, jnp.sin(2 * x @ a) + 0.1 * jax.random.normal(key_noise, (SAMPLES,))


def main():
    same = nn.Dense(4, kernel_init=jinit.he_normal()) == nn.Dense(4, kernel_init=jinit.he_normal())
    he_closure = nn.initializers.he_normal
    closures = nn.Dense(4, kernel_init=he_closure()) == nn.Dense(4, kernel_init=he_closure())
    print(f"nn.Dense(4, kernel_init=jinit.he_normal()) == nn.Dense(4, kernel_init=jinit.he_normal()): {same}")
    print(f"with nn.initializers.he_normal() instead (closures, equal only to themselves): {closures}\n")
    if not same:
        raise SystemExit("Two Dense layers with equal jinit initializers compare unequal")

    key_data, key_init = jax.random.split(jax.random.key(0))
    x, y = dataset(key_data)
    model = MLP()
    params = model.init(key_init, x)
    print(f"{'parameter':24} {'shape':>6} {'std':>7} {'expected':>8}")
    for path, p in jax.tree_util.tree_leaves_with_path(params):
        name = jax.tree_util.keystr(path, simple=True, separator="/")
        print(f"{name:24} {'x'.join(map(str, p.shape)):>6} {float(p.std()):7.4f} {expected_std(name, p.shape):8.4f}")

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
