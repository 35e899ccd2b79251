"""PyTorch's default initialization of a LeNet-5, kernels and biases, drawn by jinit in JAX's layout.

``nn.Linear`` and ``nn.Conv2d`` draw their weight uniformly in ±1/sqrt(fan_in) and their bias in the same
interval, with the *weight's* fan-in: ``jinit.torch_linear`` and ``jinit.torch_conv`` return both parameters'
specs, with that fan-in computed as PyTorch does, and ``jinit.init_tree`` draws the whole model. The script
prints each parameter's bound and largest value, checks that every value lies within its bound and that the
model runs (a forward pass in plain JAX, in Flax's layouts), and exits with an error otherwise.

Where PyTorch is installed, it also builds the same model in PyTorch, re-initializes it `DRAWS` times, and
compares each parameter's values with jinit's by a two-sample Kolmogorov-Smirnov test (at a Bonferroni-corrected
level of 1e-3 for the whole model). PyTorch is not needed otherwise.

Run: ``.venv/bin/python examples/torch_defaults.py`` (a few seconds).
"""

import math

import jax
import jax.numpy as jnp
import numpy as np

import jinit

SPECS = {  # LeNet-5 on 28x28 images, as PyTorch defines it
    "conv1": jinit.torch_conv(1, 6, (5, 5)),  # nn.Conv2d(1, 6, 5, padding=2)
    "conv2": jinit.torch_conv(6, 16, (5, 5)),  # nn.Conv2d(6, 16, 5)
    "fc1": jinit.torch_linear(16 * 5 * 5, 120),  # nn.Linear(400, 120)
    "fc2": jinit.torch_linear(120, 84),
    "fc3": jinit.torch_linear(84, 10),
}
DRAWS = 64  # fresh initializations of the model compared with PyTorch's
FAMILY_ALPHA = 1e-3


def forward(params, x):
    """LeNet-5 in plain JAX: NHWC images, HWIO kernels (Flax's layouts)."""

    def conv(x, layer, padding):
        y = jax.lax.conv_general_dilated(
            x, layer["kernel"], (1, 1), padding, dimension_numbers=("NHWC", "HWIO", "NHWC")
        )
        return y + layer["bias"]

    def pool(x):
        return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")

    x = pool(jax.nn.relu(conv(x, params["conv1"], [(2, 2), (2, 2)])))
    x = pool(jax.nn.relu(conv(x, params["conv2"], "VALID")))
    x = x.reshape(x.shape[0], -1)
    x = jax.nn.relu(x @ params["fc1"]["kernel"] + params["fc1"]["bias"])
    x = jax.nn.relu(x @ params["fc2"]["kernel"] + params["fc2"]["bias"])
    return x @ params["fc3"]["kernel"] + params["fc3"]["bias"]


def torch_comparison(torch, stats, key):
    """The smallest KS p-value of jinit's parameters against PyTorch's, over `DRAWS` initializations of each."""
    torch.manual_seed(0)
    model = {
        "conv1": torch.nn.Conv2d(1, 6, 5, padding=2),
        "conv2": torch.nn.Conv2d(6, 16, 5),
        "fc1": torch.nn.Linear(400, 120),
        "fc2": torch.nn.Linear(120, 84),
        "fc3": torch.nn.Linear(84, 10),
    }
    theirs = {(layer, name): [] for layer in SPECS for name in SPECS[layer]}
    with torch.no_grad():
        for _ in range(DRAWS):
            for layer, module in model.items():
                module.reset_parameters()
                theirs[(layer, "kernel")].append(module.weight.numpy().ravel().copy())
                theirs[(layer, "bias")].append(module.bias.numpy().copy())
    models = jinit.init_tree(key, [SPECS] * DRAWS)  # DRAWS models in one call, each parameter from its own key
    ours = {(layer, name): [np.asarray(params[layer][name]).ravel() for params in models] for layer, name in theirs}
    alpha = FAMILY_ALPHA / len(theirs)
    smallest = 1.0
    for layer, name in theirs:
        p = stats.ks_2samp(np.concatenate(ours[(layer, name)]), np.concatenate(theirs[(layer, name)])).pvalue
        print(f"{layer + '/' + name:13} KS p-value against PyTorch's: {p:.3f}")
        if p < alpha:
            raise SystemExit(f"{layer}/{name} is not distributed as PyTorch's (p = {p:.2e} < {alpha:.1e})")
        smallest = min(smallest, p)
    return smallest


def main():
    key = jax.random.key(0)
    params = jinit.init_tree(key, SPECS)
    print(f"{'parameter':13} {'shape':>15} {'fan_in':>7} {'bound':>8} {'max |x|':>8}")
    failed = []
    for layer, specs in SPECS.items():
        fan_in = specs["bias"].init.config["fan_in"]  # the weight's fan-in, as PyTorch computes it
        bound = 1 / math.sqrt(fan_in)
        for name in ("kernel", "bias"):
            top = float(jnp.abs(params[layer][name]).max())
            shape = str(params[layer][name].shape)
            print(f"{layer + '/' + name:13} {shape:>15} {fan_in:7} {bound:8.4f} {top:8.4f}")
            if top > bound * (1 + 2**-21):
                failed.append(f"{layer}/{name}")

    logits = forward(params, jnp.ones((2, 28, 28, 1)))
    print(f"\nThe model maps a batch (2, 28, 28, 1) to {logits.shape}.")
    if logits.shape != (2, 10) or not bool(jnp.isfinite(logits).all()):
        failed.append("the forward pass")
    if failed:
        raise SystemExit(f"Not as expected: {', '.join(failed)}")

    count = sum(len(specs) for specs in SPECS.values())
    try:
        import torch
        from scipy import stats
    except ModuleNotFoundError:
        comparison = "PyTorch (or SciPy) is not installed, so no comparison with its layers"
    else:
        print()
        smallest = torch_comparison(torch, stats, jax.random.key(1))
        comparison = f"distributed as PyTorch's own (smallest KS p-value {smallest:.3f})"
    print(
        f"\nPyTorch defaults: all {count} parameters of {len(SPECS)} layers lie within ±1/sqrt(fan_in); {comparison}."
    )


if __name__ == "__main__":
    main()
