"""jinit initializers as Keras 3 initializers: ``Dense(3, kernel_initializer=KerasInitializer(jinit.he_normal()))``.

`KerasInitializer` is a real ``keras.initializers.Initializer`` subclass, registered with Keras as
``"jinit>KerasInitializer"``, so models that use it save and load through ``model.save(...)`` and
``keras.models.load_model(...)``: its config holds the jinit initializer's own config (`jinit.serialize`),
loaded back with the same safety checks as `jinit.deserialize`. Importing this module imports Keras
(``pip install 'jinit[keras]'``); ``import jinit`` never does. The samples are JAX arrays, so it is meant for
Keras's JAX backend, which it selects (``KERAS_BACKEND=jax``) when Keras is not imported yet and
``KERAS_BACKEND`` is not set.
"""

import os
import random
import sys
from typing import Any

if "keras" not in sys.modules:
    os.environ.setdefault("KERAS_BACKEND", "jax")  # jinit's samples are JAX arrays

import jax

try:
    import keras
except ImportError as err:  # the framework is an optional extra
    raise ImportError("jinit.keras needs Keras 3 (>= 3.15): pip install 'jinit[keras]'") from err

from jinit._src import checks, registry, variance_scaling
from jinit._src.base import Initializer
from jinit._src.typing import InitializerLike, Shape


@keras.saving.register_keras_serializable(package="jinit")
class KerasInitializer(keras.initializers.Initializer):
    """A jinit initializer that Keras calls as ``initializer(shape, dtype=None)``.

    As Keras's random initializers: with an int `seed` every call gives the same values (those of
    ``init.with_seed(seed)``); with ``seed=None`` a seed is drawn from Python's `random` when the initializer is
    built (so ``keras.utils.set_random_seed`` makes it reproducible), and the config keeps ``seed=None``, so a
    reloaded model draws a new one; but a seeded jinit initializer (``init.with_seed(3)``) keeps its own seed.

    Args:
      init: a jinit `Initializer`, or anything `jinit.get` resolves to one (a Keras string identifier or a
        config dict).
      seed: None or an int.

    Raises:
      TypeError: `init` is not a jinit initializer (a plain function cannot be saved), or `seed` not an int.
      ValueError: `init` is an unknown identifier or an unsafe config.

    Examples:
      >>> import jinit
      >>> from jinit.keras import KerasInitializer
      >>> initializer = KerasInitializer(jinit.lecun_normal(), seed=1)
      >>> initializer((3, 2)).shape
      (3, 2)
      >>> KerasInitializer.from_config(initializer.get_config()).init == jinit.lecun_normal()
      True
    """

    def __new__(cls, init: Any = None, seed: Any = None, *args: Any, **kwargs: Any) -> "KerasInitializer":
        if cls is KerasInitializer and _scales_variance(_resolve(init)):
            return object.__new__(KerasVarianceScaling)  # what Keras's EinsumDense and MultiHeadAttention re-target
        return object.__new__(cls)

    def __init__(self, init: InitializerLike | str | dict[str, Any], seed: int | None = None) -> None:
        resolved = _resolve(init)
        if not isinstance(resolved, Initializer):
            raise TypeError(
                "Argument `init` must be a jinit initializer (or a Keras identifier or config of one), so that "
                f"Keras can save it. Received: init={checks.show(init)}"
            )
        self.init = resolved
        self._seed = checks.seed(seed)
        own = self._seed if self._seed is not None else resolved.seed
        self.seed = own if own is not None else random.randint(1, 10**9)

    def __call__(self, shape: Shape, dtype: Any = None, layout: Any = None) -> jax.Array:
        """The sample, laid out as `layout` (a `keras.distribution.TensorLayout` or a JAX sharding) if given."""
        dtype = keras.backend.standardize_dtype(dtype if dtype is not None else keras.config.floatx())
        sharding = getattr(layout, "backend_layout", layout)  # a TensorLayout's JAX sharding
        return self.init(jax.random.key(self.seed), shape, dtype, out_sharding=sharding)

    def get_config(self) -> dict[str, Any]:
        return {"init": registry.serialize(self.init), "seed": self._seed}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "KerasInitializer":
        return cls(*_loaded(config, ()))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, KerasInitializer) and (self.init, self._seed) == (other.init, other._seed)

    def __hash__(self) -> int:
        return hash((KerasInitializer, self.init, self._seed))

    def __repr__(self) -> str:
        return f"KerasInitializer({self.init!r}, seed={self._seed!r})"


def _loaded(config: Any, extra: tuple[str, ...]) -> list[Any]:
    """The arguments of a `KerasInitializer` config: its (safely loaded) jinit initializer, seed, and `extra` keys."""
    keys = ("init", "seed", *extra)
    if not isinstance(config, dict) or set(config) - set(keys) or "init" not in config:
        known = " and ".join(", ".join(repr(k) for k in keys).rsplit(", ", 1))
        raise ValueError(f"A `KerasInitializer` config has the keys {known}. {checks.received('config', config)}")
    return [registry.deserialize(config["init"]), *(config.get(k) for k in keys[1:])]


def _resolve(init: Any) -> Any:
    return registry.get(init) if isinstance(init, str | dict) else init


def _scales_variance(init: Any) -> bool:
    """Whether `init` is variance scaling over the default fans: Keras's layers would re-target its axes."""
    if isinstance(init, variance_scaling.KerasVarianceScaling):
        return True
    default = isinstance(init, variance_scaling.VarianceScaling | variance_scaling.Preset) and (
        init.in_axis,
        init.out_axis,
        init.batch_axis,
    ) == (-2, -1, ())
    return default


@keras.saving.register_keras_serializable(package="jinit")
class KerasVarianceScaling(KerasInitializer, keras.initializers.VarianceScaling):
    """The `KerasInitializer` of a jinit variance-scaling initializer: also a ``keras.initializers.VarianceScaling``,
    so that Keras's `EinsumDense` (and `MultiHeadAttention`, built of them) give it the kernel's input and output
    axes, as they give Keras's own: the fans then count those axes only (`jinit.keras_variance_scaling`).

    `KerasInitializer(init)` makes one for a variance-scaling `init` over the default fans; its `input_axes` and
    `output_axes` are None until a layer sets them.
    """

    def __init__(
        self,
        init: InitializerLike | str | dict[str, Any],
        seed: int | None = None,
        input_axes: Any = None,
        output_axes: Any = None,
    ) -> None:
        init = _resolve(init)
        if input_axes is not None and output_axes is not None:  # a layer's re-targeting (EinsumDense's)
            scale, mode, distribution = (getattr(init, k) for k in ("scale", "mode", "distribution"))
            init = variance_scaling.keras_variance_scaling(
                scale, mode, distribution, input_axes, output_axes, getattr(init, "dtype", None)
            )
        super().__init__(init, seed)
        axes = self.init if isinstance(self.init, variance_scaling.KerasVarianceScaling) else None
        self.input_axes = None if axes is None else list(axes.input_axes)
        self.output_axes = None if axes is None else list(axes.output_axes)

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "KerasVarianceScaling":
        return cls(*_loaded(config, ("input_axes", "output_axes")))  # EinsumDense adds the axes to the config
