"""The coordinate check of muP: activations keep their scale as the width grows, under the same learning rate.

An MLP (32 inputs, two ReLU hidden layers of width 128 to 2048, 10 logits) is trained for 10 steps of Adam
(written out below: no optax) on one fixed synthetic batch, with the same learning rate at every width, twice:

- in the standard parametrization (SP): He-normal hidden layers, a LeCun-normal readout, one learning rate;
- in muP: `jinit.mup` of the width-128 model (the base, where the two agree) and the wide one gives the
  initializers, a learning-rate multiplier per parameter, and the logits' multiplier.

After each step it records the scale of the activations, the mean absolute value of the last hidden layer's
pre-activations and of the logits. Under SP each Adam step moves every weight by about the learning rate, so a
wider layer's output moves more: the scales grow with the width. Under muP they stay where the base model has
them, which is what lets hyperparameters tuned at width 128 transfer to width 2048. The script exits with status 1
unless, at step 10, the ratio of the logits' scale at width 2048 to width 128 lies within [0.5, 2] under muP
and exceeds `SP_BOUND` = 3 under SP, and likewise for the pre-activations (measured: 0.96 under muP and 6.6 under
SP for the logits, 0.86 and 10.1 for the pre-activations).

Run: ``.venv/bin/python examples/mup_coordinate_check.py [--plot PATH]`` (about 10 s on two CPU cores); with
``--plot``, it draws the scales against the width (one line per step) to a PNG (needs matplotlib).
"""

import argparse
import sys

import jax
import jax.numpy as jnp

import jinit

INPUTS, CLASSES, BATCH, STEPS = 32, 10, 64, 10
WIDTHS = (128, 256, 512, 1024, 2048)
BASE = WIDTHS[0]
LEARNING_RATE = 3e-2  # Adam's, the same at every width: "tuned" on the base model
BETA1, BETA2, EPS = 0.9, 0.999, 1e-8
MUP_BOUNDS = (0.5, 2.0)  # muP: the scale at width 2048 over width 128 stays within these
SP_BOUND = 3.0  # SP: it exceeds this (measured: 6.6 for the logits, 10.1 for the pre-activations)


def mlp(width):
    """The parameter specs of the MLP at one width (the SP initializers)."""

    def dense(n_in, n_out, init):
        return {"kernel": jinit.ParamSpec((n_in, n_out), init), "bias": jinit.ParamSpec((n_out,), jinit.zeros)}

    return {
        "in": dense(INPUTS, width, jinit.he_normal()),
        "hidden": dense(width, width, jinit.he_normal()),
        "out": dense(width, CLASSES, jinit.lecun_normal()),
    }


def forward(params, x, output_multiplier):
    """The last hidden layer's pre-activations and the logits."""
    h = jax.nn.relu(x @ params["in"]["kernel"] + params["in"]["bias"])
    pre = h @ params["hidden"]["kernel"] + params["hidden"]["bias"]
    logits = jax.nn.relu(pre) @ params["out"]["kernel"] * output_multiplier + params["out"]["bias"]
    return pre, logits


def loss(params, x, y, output_multiplier):
    _, logits = forward(params, x, output_multiplier)
    return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), y[:, None], axis=1))


def adam(params, grads, state, step, multipliers):
    """One step of Adam, each parameter's step times its learning-rate multiplier."""
    m = jax.tree.map(lambda m, g: BETA1 * m + (1 - BETA1) * g, state[0], grads)
    v = jax.tree.map(lambda v, g: BETA2 * v + (1 - BETA2) * g * g, state[1], grads)

    def update(p, m, v, multiplier):
        m_hat, v_hat = m / (1 - BETA1**step), v / (1 - BETA2**step)
        return p - LEARNING_RATE * multiplier * m_hat / (jnp.sqrt(v_hat) + EPS)

    return jax.tree.map(update, params, m, v, multipliers), (m, v)


@jax.jit  # one program per width, shared by SP and muP: the multipliers are arguments
def train(params, multipliers, output_multiplier, x, y):
    """Trains 10 steps from `params`; returns the (pre-activation, logit) scales after each step."""
    state = (jax.tree.map(jnp.zeros_like, params), jax.tree.map(jnp.zeros_like, params))

    def one_step(carry, step):
        params, state = carry
        grads = jax.grad(loss)(params, x, y, output_multiplier)
        params, state = adam(params, grads, state, step, multipliers)
        pre, logits = forward(params, x, output_multiplier)
        return (params, state), jnp.stack([jnp.abs(pre).mean(), jnp.abs(logits).mean()])

    return jax.lax.scan(one_step, (params, state), jnp.arange(1, STEPS + 1, dtype=jnp.float32))[1]


def coordinate_check():
    """Scales of shape (steps, 2) for each parametrization and width."""
    key, data_key, label_key = jax.random.split(jax.random.key(0), 3)
    x = jax.random.normal(data_key, (BATCH, INPUTS))
    y = jax.random.randint(label_key, (BATCH,), 0, CLASSES)
    scales = {}
    for width in WIDTHS:
        specs = mlp(width)
        ones = jax.tree.map(lambda _: 1.0, specs, is_leaf=lambda leaf: isinstance(leaf, jinit.ParamSpec))
        scales["SP", width] = train(jinit.init_tree(key, specs), ones, 1.0, x, y)
        mup = jinit.mup(mlp(BASE), specs)  # the base's shapes, the wide model's specs
        params = jinit.init_tree(key, mup.specs)
        scales["muP", width] = train(params, mup.lr_multipliers, mup.output_multiplier, x, y)
    return jax.device_get(scales)


def plot(scales, path):
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(2, 2, figsize=(10, 7), sharex=True, sharey="col", constrained_layout=True)
    for row, name in enumerate(("SP", "muP")):
        for column, what in enumerate(("last hidden pre-activations", "logits")):
            ax = axes[row, column]
            for step in range(STEPS):
                color = plt.get_cmap("viridis")(step / (STEPS - 1))
                ax.plot(WIDTHS, [scales[name, w][step, column] for w in WIDTHS], color=color, marker="o", ms=3)
            ax.set(xscale="log", yscale="log", title=f"{name}: {what}", ylabel="mean |x|")
            ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
            ax.set_xticks(WIDTHS, [str(w) for w in WIDTHS])
    for ax in axes[1]:
        ax.set_xlabel("width (one line per Adam step, dark to light)")
    figure.savefig(path, dpi=100)


def check(scales):
    """The ratios, width 2048 over width 128 at the last step, by (parametrization, column), and what fails."""
    ratios = {
        (name, column): float(scales[name, WIDTHS[-1]][-1, column] / scales[name, BASE][-1, column])
        for name in ("SP", "muP")
        for column in (0, 1)
    }
    failures = [
        f"{name} {what}: {ratios[name, column]:.3g}"
        for column, what in enumerate(("pre-activations", "logits"))
        for name in ("SP", "muP")
        if not (
            MUP_BOUNDS[0] <= ratios[name, column] <= MUP_BOUNDS[1] if name == "muP" else ratios[name, column] > SP_BOUND
        )
    ]
    return ratios, failures


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plot", metavar="PATH", help="draw the scales to this PNG (needs matplotlib)")
    args = parser.parse_args()
    scales = coordinate_check()
    print(f"{'':4} {'width':>6} {'pre-activations (step 1 .. 10)':>34} {'logits (step 1 .. 10)':>28}")
    for name in ("SP", "muP"):
        for width in WIDTHS:
            pre, logits = scales[name, width][:, 0], scales[name, width][:, 1]
            print(f"{name:4} {width:6} {pre[0]:16.3f} .. {pre[-1]:12.3f} {logits[0]:12.3f} .. {logits[-1]:12.3f}")
    if args.plot:
        plot(scales, args.plot)
        print(f"Wrote {args.plot}")
    ratios, failures = check(scales)
    if failures:
        print(f"Coordinate check failed (width {WIDTHS[-1]} over width {BASE}, step {STEPS}): {'; '.join(failures)}")
        sys.exit(1)
    print(
        f"muP coordinate check: at step {STEPS}, width {WIDTHS[-1]} over width {BASE}: logits {ratios['muP', 1]:.2f} "
        f"(SP {ratios['SP', 1]:.1f}), last hidden pre-activations {ratios['muP', 0]:.2f} (SP {ratios['SP', 0]:.1f})"
    )


if __name__ == "__main__":
    main()
