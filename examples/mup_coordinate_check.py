"""The coordinate check of muP: activations keep their scale as the width grows, under the same learning rate.

An MLP (32 inputs, two ReLU hidden layers of width 128 to 2048, 10 logits) is trained for 10 steps of Adam on one
fixed synthetic batch, with the same learning rate at every width, twice, by `jinit.coord_check`:

- in the standard parametrization (SP): He-normal hidden layers, a LeCun-normal readout, `optax.adam`;
- in muP: `jinit.mup` of the width-128 model (the base, where the two agree) and the wide one gives the
  initializers and the logits' multiplier, and `jinit.mu_adam` gives each parameter its learning rate.

`coord_check` records the mean absolute value of the activations before the first step and after each step: the
first hidden layer's outputs, the last hidden layer's pre-activations and the logits. Under SP each Adam step moves
every weight by about the learning rate, so a wider layer's output moves more: the scales grow with the width.
Under muP they stay where the base model has them, which is what lets hyperparameters tuned at width 128 transfer
to width 2048. The script exits with status 1 unless, at step 10, the ratio of the logits' scale at width 2048 to
width 128 lies within [0.5, 2] under muP and exceeds `SP_BOUND` = 3 under SP, and likewise for the
pre-activations (measured: 0.77 under muP and 4.2 under SP for the logits, 0.85 and 11.8 for the pre-activations).

Run: ``.venv/bin/python examples/mup_coordinate_check.py [--plot PATH]`` (about 10 s on two CPU cores; needs optax);
with ``--plot``, it draws the scales against the width (one line per step) to a PNG (needs matplotlib).
"""

import argparse
import sys

import jax
import jax.numpy as jnp
import optax

import jinit

INPUTS, CLASSES, BATCH, STEPS = 32, 10, 64, 10
WIDTHS = (128, 256, 512, 1024, 2048)
BASE = WIDTHS[0]
LEARNING_RATE = 3e-2  # Adam's, the same at every width: "tuned" on the base model
MUP_BOUNDS = (0.5, 2.0)  # muP: the scale at width 2048 over width 128 stays within these
SP_BOUND = 3.0  # SP: it exceeds this (measured: 4.2 for the logits, 11.8 for the pre-activations)
CHECKED = {"hidden": "pre-activations", "logits": "logits"}


def mlp(width):
    """The parameter specs of the MLP at one width (the SP initializers)."""

    def dense(n_in, n_out, init):
        return {"kernel": jinit.ParamSpec((n_in, n_out), init), "bias": jinit.ParamSpec((n_out,), jinit.zeros)}

    return {
        "in": dense(INPUTS, width, jinit.he_normal()),
        "hidden": dense(width, width, jinit.he_normal()),
        "out": dense(width, CLASSES, jinit.lecun_normal()),
    }


def model(parametrization):
    """`coord_check`'s model: the width -> (parameters, forward pass, optimizer)."""
    key = jax.random.key(0)

    def build(width):
        if parametrization == "muP":
            mup = jinit.mup(mlp(BASE), mlp(width))  # the base's shapes, the wide model's specs
            specs, multiplier, optimizer = mup.specs, mup.output_multiplier, jinit.mu_adam(LEARNING_RATE, mup)
        else:
            specs, multiplier, optimizer = mlp(width), 1.0, optax.adam(LEARNING_RATE)

        def forward(params, batch):
            x, y = batch
            h = jax.nn.relu(x @ params["in"]["kernel"] + params["in"]["bias"])
            pre = h @ params["hidden"]["kernel"] + params["hidden"]["bias"]
            logits = jax.nn.relu(pre) @ params["out"]["kernel"] * multiplier + params["out"]["bias"]
            loss = -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), y[:, None], axis=1))
            return loss, {"input": h, "hidden": pre, "logits": logits}

        return jinit.init_tree(key, specs), forward, optimizer

    return build


def coordinate_check():
    """The `CoordCheck` of each parametrization."""
    data_key, label_key = jax.random.split(jax.random.key(1))
    batch = (jax.random.normal(data_key, (BATCH, INPUTS)), jax.random.randint(label_key, (BATCH,), 0, CLASSES))
    return {name: jinit.coord_check(model(name), WIDTHS, batch, steps=STEPS) for name in ("SP", "muP")}


def check(checks):
    """The ratios, width 2048 over width 128 after the last step, by (parametrization, activation), and what fails."""
    ratios = {
        (name, what): float(checks[name].scale(what)[-1, -1] / checks[name].scale(what)[0, -1])
        for name in ("SP", "muP")
        for what in CHECKED
    }
    failures = [
        f"{name} {CHECKED[what]}: {ratio:.3g}"
        for (name, what), ratio in ratios.items()
        if not (MUP_BOUNDS[0] <= ratio <= MUP_BOUNDS[1] if name == "muP" else ratio > SP_BOUND)
    ]
    return ratios, failures


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plot", metavar="PATH", help="draw the scales to this PNG (needs matplotlib)")
    args = parser.parse_args()
    checks = coordinate_check()
    print(f"{'':4} {'width':>6} {'pre-activations (step 1 .. 10)':>34} {'logits (step 1 .. 10)':>28}")
    for name in ("SP", "muP"):
        pre, logits = checks[name].scale("hidden"), checks[name].scale("logits")
        for i, width in enumerate(WIDTHS):
            steps = f"{pre[i, 1]:16.3f} .. {pre[i, -1]:12.3f} {logits[i, 1]:12.3f} .. {logits[i, -1]:12.3f}"
            print(f"{name:4} {width:6} {steps}")
    if args.plot:
        from matplotlib.figure import Figure

        figure = Figure(figsize=(11, 7), constrained_layout=True)
        rows = figure.subplots(2, 3, sharex=True)
        for row, name in zip(rows, ("SP", "muP"), strict=True):
            checks[name].plot(axes=row)
            for ax in row:
                ax.set_title(f"{name}: {ax.get_title()}")
        figure.savefig(args.plot, dpi=100)
        print(f"Wrote {args.plot}")
    ratios, failures = check(checks)
    if failures:
        print(f"Coordinate check failed (width {WIDTHS[-1]} over width {BASE}, step {STEPS}): {'; '.join(failures)}")
        sys.exit(1)
    print(
        f"muP coordinate check: at step {STEPS}, width {WIDTHS[-1]} over width {BASE}: logits "
        f"{ratios['muP', 'logits']:.2f} (SP {ratios['SP', 'logits']:.1f}), last hidden pre-activations "
        f"{ratios['muP', 'hidden']:.2f} (SP {ratios['SP', 'hidden']:.1f})"
    )


if __name__ == "__main__":
    main()
