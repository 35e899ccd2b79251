"""Migrating a Keras model's initialization to Flax: read the initializers from ``model.to_json()`` with jinit.

A small Keras text classifier (Embedding, Conv1D, Flatten, Dense layers) uses a variety of initializers:
TruncatedNormal, HeNormal, "zeros", VarianceScaling (with Keras's ``distribution="normal"``, which means the
truncated normal), Orthogonal with a gain, "glorot_uniform", Constant. The script parses the model's JSON, loads
every ``*_initializer`` entry of every layer with ``jinit.deserialize`` (jinit reads the configs Keras 2 and 3
write, with Keras's meaning; a bare string such as "zeros" would go through ``jinit.get``), and builds the same
architecture in Flax linen from the layer configs, with those initializers. Both lay their weights out alike: a
Dense kernel is (in, out), a Conv1D kernel (width, in, out), an embedding (vocabulary, features).

For every parameter it prints the Keras initializer, the jinit one and the shape, and compares the Flax
parameter with the one Keras initialized: shapes equal, constants equal, and for random ones the sample mean
and std of the two agree. Each sample std has a relative standard error of at most 1/sqrt(2n) for these
distributions (a normal's; the truncated and uniform ones have lighter tails, an orthogonal matrix's sum of
squares is exact), so the difference of two has at most std/sqrt(n), and that of the means std*sqrt(2/n); a
two-sample Kolmogorov-Smirnov test compares the whole distributions. The script exits with an error if any
initializer was not converted, any difference exceeds 6 of those standard errors or a KS p-value is below 1e-4.

Run: ``.venv/bin/python examples/keras_to_flax.py`` (a few seconds; needs ``pip install -e '.[keras,flax]'``).
"""

import json
import math
import os

os.environ.setdefault("KERAS_BACKEND", "jax")

import flax.linen as nn
import jax
import keras
import numpy as np
import scipy.stats

import jinit

VOCAB, LENGTH, BATCH, SIGMAS, MIN_P = 1000, 16, 4, 6, 1e-4
FLAX_NAMES = {"embeddings": "embedding"}  # Keras's weight name -> Flax's, where they differ


def keras_model():
    init = keras.initializers
    return keras.Sequential([
        keras.Input((LENGTH,), dtype="int32"),
        keras.layers.Embedding(VOCAB, 32, embeddings_initializer=init.TruncatedNormal(stddev=0.02)),
        keras.layers.Conv1D(64, 3, activation="relu", kernel_initializer=init.HeNormal(), bias_initializer="zeros"),
        keras.layers.Flatten(),
        keras.layers.Dense(128, activation="relu",
                           kernel_initializer=init.VarianceScaling(scale=2.0, mode="fan_in", distribution="normal")),
        keras.layers.Dense(64, activation="tanh", kernel_initializer=init.Orthogonal(gain=5 / 3)),
        keras.layers.Dense(32, activation="relu", kernel_initializer="glorot_uniform",
                           bias_initializer=init.Constant(0.1)),
        keras.layers.Dense(10, kernel_initializer=init.VarianceScaling(scale=0.1, mode="fan_avg",
                                                                       distribution="uniform")),
    ])  # fmt: skip


def load(config):
    """A Keras initializer entry as a jinit initializer: a config dict, or a bare identifier string."""
    return jinit.deserialize(config) if isinstance(config, dict) else jinit.get(config)


class FromKeras(nn.Module):
    """The Flax linen equivalent of the Keras layers in `layers`: ``(class_name, config, {weight: init})``."""

    layers: tuple

    @nn.compact
    def __call__(self, x):
        for class_name, config, inits in self.layers:
            name = config["name"]
            if class_name == "Embedding":
                x = nn.Embed(config["input_dim"], config["output_dim"], embedding_init=inits["embeddings"],
                             name=name)(x)  # fmt: skip
            elif class_name == "Conv1D":
                x = nn.Conv(config["filters"], tuple(config["kernel_size"]), tuple(config["strides"]),
                            padding=config["padding"].upper(), kernel_init=inits["kernel"],
                            bias_init=inits["bias"], name=name)(x)  # fmt: skip
            elif class_name == "Flatten":
                x = x.reshape(x.shape[0], -1)
            elif class_name == "Dense":
                x = nn.Dense(config["units"], kernel_init=inits["kernel"], bias_init=inits["bias"], name=name)(x)
            else:
                raise SystemExit(f"No Flax translation for a Keras {class_name} layer")
            activation = config.get("activation", "linear")
            x = x if activation == "linear" else getattr(nn, activation)(x)
        return x


def compare(a, b):
    """Flax's `a` against Keras's `b`: the larger error of mean and std as a fraction of its tolerance, and a p-value.

    The p-value is a two-sample Kolmogorov-Smirnov test's, which also sees the shape of the distribution (a normal
    where Keras truncates has the same std). Constants must be equal: (0, 1) if they are, else (inf, 0).
    """
    if a.shape != b.shape or b.std() == 0:
        return (0.0, 1.0) if np.array_equal(a, b) else (math.inf, 0.0)
    n, sigma = b.size, float(b.std(dtype=np.float64))
    std_error = abs(a.std(dtype=np.float64) - sigma) / (SIGMAS * sigma / math.sqrt(n))
    mean_error = abs(a.mean(dtype=np.float64) - b.mean(dtype=np.float64)) / (SIGMAS * sigma * math.sqrt(2 / n))
    return max(std_error, mean_error), float(scipy.stats.ks_2samp(a.ravel(), b.ravel()).pvalue)


def main():
    keras.utils.set_random_seed(0)
    model = keras_model()
    layers, converted = [], {}  # converted: (layer, weight) -> (the Keras class name, the jinit initializer)
    for layer in json.loads(model.to_json())["config"]["layers"]:
        config, inits = layer["config"], {}
        for entry, value in config.items():
            if entry.endswith("_initializer"):  # a ValueError or TypeError here names what jinit cannot read
                weight = entry.removesuffix("_initializer")
                inits[weight] = load(value)
                keras_class = value if isinstance(value, str) else value["class_name"]
                converted[config["name"], weight] = keras_class, inits[weight]
        if layer["class_name"] != "InputLayer":
            layers.append((layer["class_name"], config, inits))

    flax_model = FromKeras(tuple(layers))
    tokens = jax.random.randint(jax.random.key(1), (BATCH, LENGTH), 0, VOCAB)
    params = jax.jit(flax_model.init)(jax.random.key(0), tokens)["params"]  # one compile, not one per operation

    print(f"{'layer':10} {'parameter':10} {'Keras':15} {'shape':>8} {'Keras std':>9} {'Flax std':>9} "
          f"{'err/tol':>7} {'KS p':>5}  jinit")  # fmt: skip
    failed, compared = [], 0
    for layer in model.layers:
        for weight in layer.weights:
            kind = weight.path.rsplit("/", 1)[-1]
            keras_class, init = converted[layer.name, kind]
            a, b = np.asarray(params[layer.name][FLAX_NAMES.get(kind, kind)]), np.asarray(weight.value)
            ratio, p = compare(a, b)
            compared += 1
            if ratio > 1 or p < MIN_P:
                failed.append(weight.path)
            shape = "x".join(map(str, b.shape))
            print(f"{layer.name:10} {kind:10} {keras_class:15} {shape:>8} {b.std():9.5f} {a.std():9.5f} "
                  f"{ratio:7.2f} {p:5.3f}  {init!r}")  # fmt: skip

    out_keras, out_flax = model(tokens), flax_model.apply({"params": params}, tokens)
    print(f"\nKeras maps tokens {tokens.shape} to {tuple(out_keras.shape)}, Flax to {out_flax.shape}.")
    if tuple(out_keras.shape) != out_flax.shape:
        failed.append("the output shape")
    if compared != len(converted):
        failed.append(f"{len(converted)} initializers converted but {compared} weights compared")
    if failed:
        raise SystemExit(f"Flax differs from Keras: {', '.join(failed)}")
    print(
        f"All {len(converted)} Keras initializers converted; every Flax parameter agrees with Keras's "
        f"(mean and std within {SIGMAS} standard errors, KS p >= {MIN_P})."
    )


if __name__ == "__main__":
    main()
