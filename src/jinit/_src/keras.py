"""Keras compatibility: Keras's string identifiers and configs (Keras 2 and 3), and configs Keras loads.

Strings and configs speak Keras, with Keras's defaults: ``"normal"`` is Keras's ``RandomNormal(stddev=0.05)``,
and a Keras ``VarianceScaling(distribution="normal")`` is the truncated normal.
"""

import re
from collections.abc import Callable
from typing import Any

import numpy as np

from jinit._src import checks, constant, orthogonal, random, stft, variance_scaling
from jinit._src.base import Initializer
from jinit._src.variance_scaling import keras_variance_scaling

# Strings speak Keras (2 and 3): class names, snake_case names and Keras's aliases, with Keras's defaults.
# A jinit name that Keras does not have (e.g. "delta_orthogonal") is the jinit factory with its own defaults.
_KERAS_STRINGS: dict[str, Callable[[], Initializer]] = {}


def _keras_string(names: tuple[str, ...], build: Callable[[], Initializer]) -> None:
    for name in names:
        _KERAS_STRINGS[name] = build


def _declare_strings() -> None:
    """The Keras identifiers and what each means, with Keras's default arguments."""
    _keras_string(("Zeros", "zeros", "zero"), lambda: constant.zeros)
    _keras_string(("Ones", "ones", "one"), lambda: constant.ones)
    _keras_string(("Constant", "constant"), lambda: constant.constant(0.0))
    _keras_string(("RandomNormal", "random_normal", "normal"), lambda: random.random_normal(0.0, 0.05))
    _keras_string(("RandomUniform", "random_uniform", "uniform"), lambda: random.random_uniform(-0.05, 0.05))
    # Keras's TruncatedNormal cuts at two standard deviations around the mean, with no variance correction.
    _keras_string(("TruncatedNormal", "truncated_normal"), lambda: random.truncated_normal(0.05))
    _keras_string(
        ("VarianceScaling", "variance_scaling"),
        lambda: variance_scaling.variance_scaling(1.0, "fan_in", "truncated_normal"),
    )
    for keras_name, name in [
        ("GlorotUniform", "glorot_uniform"),
        ("GlorotNormal", "glorot_normal"),
        ("HeUniform", "he_uniform"),
        ("HeNormal", "he_normal"),
        ("LecunUniform", "lecun_uniform"),
        ("LecunNormal", "lecun_normal"),
    ]:
        _keras_string((keras_name, name), getattr(variance_scaling, name))
    for alias in ("xavier_uniform", "xavier_normal", "kaiming_uniform", "kaiming_normal"):  # JAX's aliases
        _keras_string((alias,), getattr(variance_scaling, alias))
    _keras_string(("Orthogonal", "OrthogonalInitializer", "orthogonal"), lambda: orthogonal.orthogonal(1.0))
    _keras_string(("Identity", "IdentityInitializer", "identity"), lambda: constant.identity(1.0))
    _keras_string(("STFT", "STFTInitializer", "stft"), lambda: stft.stft())


def strings() -> dict[str, Callable[[], Initializer]]:
    """Keras's string identifiers, each with a function giving its initializer."""
    return _KERAS_STRINGS


_KERAS_CLASSES: dict[str, Callable[..., Initializer]] = {}


def _declare_classes() -> None:
    """Keras's class names, each with a function of its config's keys (Keras's defaults) giving the initializer.

    A Keras 2 config may carry a stray `dtype`: it becomes the initializer's default dtype.
    """

    def zeros(dtype=None):
        return constant.zeros if dtype is None else constant.constant(0.0, dtype)

    def ones(dtype=None):
        return constant.ones if dtype is None else constant.constant(1.0, dtype)

    def truncated(mean=0.0, stddev=0.05, dtype=None):  # cut at two standard deviations around the mean
        return random.truncated_normal(stddev, dtype, -2.0, 2.0, mean=mean)

    def scaling(
        scale=1.0, mode="fan_in", distribution="truncated_normal", input_axes=None, output_axes=None, dtype=None
    ):
        if isinstance(distribution, str):  # in Keras, "normal" is the truncated normal
            distribution = {"normal": "truncated_normal", "untruncated_normal": "normal"}.get(
                distribution.lower(), distribution.lower()
            )
        if input_axes is not None and output_axes is not None:  # Keras ignores them unless both are given
            return keras_variance_scaling(scale, mode, distribution, input_axes, output_axes, dtype)
        return variance_scaling.variance_scaling(scale, mode, distribution, dtype=dtype)

    def preset(name: str, scale: float, mode: str, distribution: str) -> Callable[..., Initializer]:
        def build(input_axes=None, output_axes=None, dtype=None):
            if input_axes is not None and output_axes is not None:
                return keras_variance_scaling(scale, mode, distribution, input_axes, output_axes, dtype)
            return getattr(variance_scaling, name)(dtype=dtype)

        return build

    classes: dict[str, Callable[..., Initializer]] = {
        "Zeros": zeros,
        "Ones": ones,
        "Constant": lambda value=0.0, dtype=None: constant.constant(_array(value), dtype),
        "RandomNormal": lambda mean=0.0, stddev=0.05, dtype=None: random.random_normal(mean, stddev, dtype),
        "RandomUniform": lambda minval=-0.05, maxval=0.05, dtype=None: random.random_uniform(minval, maxval, dtype),
        "TruncatedNormal": truncated,
        "VarianceScaling": scaling,
        "Orthogonal": lambda gain=1.0, dtype=None: orthogonal.orthogonal(gain, dtype=dtype),
        "Identity": lambda gain=1.0, dtype=None: constant.identity(gain, dtype),
    }
    classes["STFT"] = stft.stft
    for keras_name, name, scale, mode, distribution in [
        ("GlorotUniform", "glorot_uniform", 1.0, "fan_avg", "uniform"),
        ("GlorotNormal", "glorot_normal", 1.0, "fan_avg", "truncated_normal"),
        ("HeUniform", "he_uniform", 2.0, "fan_in", "uniform"),
        ("HeNormal", "he_normal", 2.0, "fan_in", "truncated_normal"),
        ("LecunUniform", "lecun_uniform", 1.0, "fan_in", "uniform"),
        ("LecunNormal", "lecun_normal", 1.0, "fan_in", "truncated_normal"),
    ]:
        classes[keras_name] = preset(name, scale, mode, distribution)
    # Keras's `deserialize` also takes each class's snake_case name, and these aliases
    classes.update({_snake_case(keras_name): build for keras_name, build in classes.items()})
    aliases = {"IdentityInitializer": "Identity", "normal": "RandomNormal", "one": "Ones",
               "STFTInitializer": "STFT", "OrthogonalInitializer": "Orthogonal", "uniform": "RandomUniform",
               "zero": "Zeros"}  # fmt: skip
    classes.update({alias: classes[target] for alias, target in aliases.items()})
    _KERAS_CLASSES.update(classes)


def _snake_case(name: str) -> str:
    """Keras's `to_snake_case`: ``GlorotUniform`` -> ``glorot_uniform``, ``STFT`` -> ``stft``."""
    name = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", name).lower()


def _array(value: Any) -> Any:
    """A Keras config's value: an array as Keras 3 writes it (``{"class_name": "__numpy__", "config": {"value":
    [...], "dtype": ...}}``, or ``"__tensor__"``) becomes that array; anything else is left as it is."""
    if isinstance(value, dict) and value.get("class_name") in ("__numpy__", "__tensor__"):
        inner = value.get("config")
        if not (isinstance(inner, dict) and set(inner) == {"value", "dtype"}):
            raise ValueError(
                f"An array in a Keras config has a `config` of its `value` and `dtype`. "
                f"{checks.received('value', value)}"
            )
        dtype = checks.dtype("value.config.dtype", inner["dtype"])
        try:
            return np.asarray(inner["value"], dtype)
        except (TypeError, ValueError) as err:
            message = f"An array in a Keras config must hold numbers ({err})."
            raise TypeError(f"{message} {checks.received('value', value)}") from None
    return value


def classes() -> dict[str, Callable[..., Initializer]]:
    """Keras's class names, each with a function of its config's keys giving the initializer."""
    return _KERAS_CLASSES


_KERAS_PRESETS = {
    "glorot_uniform": "GlorotUniform",
    "glorot_normal": "GlorotNormal",
    "he_uniform": "HeUniform",
    "he_normal": "HeNormal",
    "lecun_uniform": "LecunUniform",
    "lecun_normal": "LecunNormal",
}
_DEFAULT_AXES = {"in_axis": -2, "out_axis": -1, "batch_axis": ()}


def to_keras(init: Initializer) -> dict[str, Any]:
    """A Keras 3 config that `keras.initializers.deserialize` turns into the equivalent Keras initializer.

    Args:
      init: an `Initializer`.

    Returns:
      ``{"module": "keras.initializers", "class_name": ..., "config": {...}, "registered_name": None}``.

    Raises:
      ValueError: Keras cannot express `init`: a factory Keras lacks (e.g. `delta_orthogonal`), the mode
        ``"fan_geo_avg"``, axes other than the defaults, `truncated_normal` bounds other than ±2, an
        `orthogonal` `column_axis` other than -1, or a dtype (Keras initializers take it when called).
      TypeError: `init` is not an `Initializer`.

    Examples:
      >>> import jinit
      >>> jinit.to_keras(jinit.he_normal().with_seed(1))["class_name"]
      'HeNormal'
      >>> jinit.to_keras(jinit.variance_scaling(2.0, "fan_in", "normal"))["config"]["distribution"]
      'untruncated_normal'
    """
    if not isinstance(init, Initializer):
        raise TypeError(f"`to_keras` takes a jinit `Initializer`. Received: init={checks.show(init)}")
    config, seed = init.config, init.seed

    def refuse(why: str) -> ValueError:
        return ValueError(f"Keras cannot express `{checks.show(init)}`: {why}.")

    if config.pop("dtype", None) is not None:
        raise refuse("a Keras initializer takes its dtype when called, not in its config")
    if any(k in config and config[k] != v for k, v in _DEFAULT_AXES.items()):
        raise refuse("Keras's fans use the default axes (in_axis=-2, out_axis=-1, batch_axis=())")
    for k in _DEFAULT_AXES:
        config.pop(k, None)
    name, random_ = init.name, True
    if name in ("zeros", "ones"):
        class_name, keras_config, random_ = name.capitalize(), {}, False
    elif name == "constant":
        class_name, keras_config, random_ = "Constant", {"value": _json(config["value"])}, False
    elif name == "identity":
        class_name, keras_config, random_ = "Identity", {"gain": config["gain"]}, False
    elif name in ("normal", "random_normal"):
        class_name, keras_config = "RandomNormal", {"mean": config["mean"], "stddev": config["stddev"]}
    elif name == "uniform":
        class_name, keras_config = "RandomUniform", {"minval": 0.0, "maxval": config["scale"]}
    elif name == "random_uniform":
        class_name, keras_config = "RandomUniform", {"minval": config["minval"], "maxval": config["maxval"]}
    elif name == "truncated_normal":
        if (config["lower"], config["upper"]) != (-2.0, 2.0):
            raise refuse("Keras's TruncatedNormal cuts at two standard deviations (lower=-2.0, upper=2.0)")
        class_name, keras_config = "TruncatedNormal", {"mean": config["mean"], "stddev": config["stddev"]}
    elif name == "variance_scaling":
        if config["mode"] == "fan_geo_avg":
            raise refuse("Keras's VarianceScaling has no mode 'fan_geo_avg'")
        distribution = {"normal": "untruncated_normal"}.get(config["distribution"], config["distribution"])
        class_name = "VarianceScaling"
        keras_config = {"scale": config["scale"], "mode": config["mode"], "distribution": distribution}
    elif name in _KERAS_PRESETS:
        class_name, keras_config = _KERAS_PRESETS[name], {}
    elif name == "orthogonal":
        if config["column_axis"] != -1:
            raise refuse("Keras's Orthogonal takes the last axis as the columns (column_axis=-1)")
        class_name, keras_config = "Orthogonal", {"gain": config["scale"]}
    elif name == "keras_variance_scaling":
        if config["mode"] == "fan_geo_avg":
            raise refuse("Keras's VarianceScaling has no mode 'fan_geo_avg'")
        distribution = {"normal": "untruncated_normal"}.get(config["distribution"], config["distribution"])
        class_name = "VarianceScaling"
        keras_config = {k: _json(config[k]) for k in ("scale", "mode", "input_axes", "output_axes")}
        keras_config["distribution"] = distribution
    elif name == "stft":
        class_name, random_ = "STFT", False
        keras_config = {k: _json(config[k]) for k in ("side", "window", "scaling", "periodic")}
    else:
        raise refuse(f"Keras has no `{name}`")
    if random_:
        keras_config["seed"] = seed
    elif seed is not None:
        raise refuse("Keras's non-random initializers take no seed")
    return {"module": "keras.initializers", "class_name": class_name, "config": keras_config, "registered_name": None}


def _json(value: Any) -> Any:
    """A config value as JSON writes it: tuples as lists."""
    return [_json(v) for v in value] if isinstance(value, tuple) else value


# Filled once, on import, so that threads only ever read them.
_declare_strings()
_declare_classes()
