"""Keras 3's STFT initializer: convolution kernels that compute a short-time Fourier transform."""

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jinit._src import checks, windows
from jinit._src.base import Initializer
from jinit._src.typing import DTypeLike

SIDES = ("real", "imag")
SCALINGS = ("density", "spectrum")


def _window_name(name: str) -> str:
    """Checks a window's name: one `scipy.signal.get_window` takes without parameters (Keras takes those)."""
    base, _ = windows.split(name)
    if base in windows.NEEDS_PARAMETERS:
        raise ValueError(
            f"Argument `window` names a window that needs parameters ({base!r}); pass its values instead, e.g. "
            f"scipy.signal.get_window(({base!r}, ...), frame_length). {checks.received('window', name)}"
        )
    if base not in windows.WINDOWS:
        raise ValueError(
            f"Argument `window` must be the name of a window of `scipy.signal.get_window` (with an optional "
            f"'_periodic' or '_symmetric'), values, or None. Known: {', '.join(sorted(windows.WINDOWS))}. "
            f"{checks.received('window', name)}"
        )
    return name


@dataclasses.dataclass(frozen=True, repr=False, eq=False)
class Stft(Initializer, name="stft"):
    """`stft`'s value: short-time Fourier transform kernels."""

    side: str = "real"
    window: Any = "hann"
    scaling: str | None = "density"
    periodic: bool = False
    dtype: str | None = None
    keyless = True

    def __post_init__(self) -> None:
        window = self.window
        if isinstance(window, str) or window is None:
            window = window if window is None else _window_name(window)
        elif isinstance(window, list | tuple | np.ndarray | jax.Array):
            try:
                values = np.asarray(window)
            except ValueError:  # ragged
                values = None
            if values is None or values.ndim != 1:
                raise TypeError(
                    f"Argument `window` must be a sequence of numbers (one per frame step). "
                    f"{checks.received('window', window)}"
                )
            window = tuple(checks.number("window", w) for w in values.tolist())
        else:
            raise TypeError(
                "Argument `window` must be a window's name, a sequence of numbers or None. "
                f"{checks.received('window', window)}"
            )
        self._set(
            side=checks.choice("side", self.side, SIDES),
            window=window,
            scaling=None if self.scaling is None else checks.choice("scaling", self.scaling, SCALINGS),
            periodic=checks.boolean("periodic", self.periodic),
            dtype=checks.dtype("dtype", self.dtype),
        )

    def sample(self, key, shape, dtype, sharding):
        if len(shape) != 3:
            raise ValueError(
                f"`stft` needs a shape (frame_length, channels, fft_bins) of rank 3. Received: shape={shape}"
            )
        frame_length, _, bins = shape
        window = self.window
        if isinstance(window, tuple) and len(window) != frame_length:
            raise ValueError(
                f"`stft` window of length {len(window)} does not match the frame length. Received: shape={shape}"
            )
        if math.prod(shape) == 0:
            return jnp.zeros(shape, dtype, device=sharding)
        fft_length = max(1, (bins - 1) * 2)
        angle = -2 * np.pi * np.arange(frame_length)[:, None, None] * np.arange(bins)[None, None, :] / fft_length
        kernel = np.cos(angle) if self.side == "real" else np.sin(angle)
        if window is not None:
            named = not isinstance(window, tuple)
            w = windows.window(window, frame_length, self.periodic) if named else np.asarray(window, np.float64)
            norm = {"density": np.sqrt(np.sum(w**2)), "spectrum": np.sum(np.abs(w)), None: 1.0}[self.scaling]
            kernel = kernel * w[:, None, None] / norm
        return jnp.asarray(np.broadcast_to(kernel, shape), dtype, device=sharding)


def stft(
    side: str = "real",
    window: Any = "hann",
    scaling: str | None = "density",
    periodic: bool = False,
    dtype: DTypeLike | None = None,
) -> Initializer:
    """Builds an initializer of short-time Fourier transform kernels, as Keras 3's `STFT`.

    For a shape ``(T, C, F)`` (frame length, input channels, frequency bins), with ``n = 2 * (F - 1)``,
    ``kernel[t, c, f] = cos(-2 pi t f / n) * w[t] / s`` for ``side="real"`` (``sin`` for ``"imag"``), where ``w``
    is the window (ones for None) and ``s`` is ``sqrt(sum(w**2))`` (``"density"``), ``sum(|w|)``
    (``"spectrum"``) or 1 (None). Keras returns ``(T, 1, F)`` whatever ``C``; jinit repeats the kernel over
    the channels so that the result has the requested shape. Computed in float64 with NumPy (a constant, no
    randomness), then cast.

    Args:
      side: ``"real"`` or ``"imag"``.
      window: the name of a window of `scipy.signal.get_window` that takes no parameter (``"hann"``,
        ``"hamming"``, ``"tukey"``, ``"blackmanharris"``, ``"flattop"``, ... and SciPy's aliases, optionally
        with ``"_periodic"`` or ``"_symmetric"``; computed with NumPy, as SciPy computes them), a sequence of
        ``T`` finite numbers, or None.
      scaling: ``"density"``, ``"spectrum"`` or None.
      periodic: whether a named window is periodic (for spectral analysis) rather than symmetric.
      dtype: the default dtype of the result; None is JAX's default float type.

    Returns:
      An `Initializer` for shapes of rank 3; the key may be None.

    Raises:
      ValueError: an unknown side, window or scaling; when called, a shape of another rank or a window of
        another length than the frame.
      TypeError: `periodic` is not a boolean, or `window` is not a string, numbers or None.

    Examples:
      >>> import jinit
      >>> jinit.stft(window=None, scaling=None)(None, (2, 1, 2))[:, 0, :]
      Array([[ 1.,  1.],
             [ 1., -1.]], dtype=float32)
    """
    return Stft(side, window, scaling, periodic, dtype)
