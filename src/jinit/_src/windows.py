"""The window functions of `scipy.signal.get_window` that take no parameter, in NumPy: the windows Keras 3's STFT
initializer accepts by name, without SciPy.

Each function makes the symmetric window of length ``m`` in float64, as SciPy writes it; `window` makes the
periodic one (for spectral analysis) from the symmetric window one sample longer, as SciPy does.
"""

import math

import numpy as np


def _cosines(m: int, coefficients: tuple[float, ...]) -> np.ndarray:
    """SciPy's `general_cosine`: ``sum(a[k] * cos(k * x))`` for ``x`` from -pi to pi."""
    x = np.linspace(-np.pi, np.pi, m)
    return sum((a * np.cos(k * x) for k, a in enumerate(coefficients)), np.zeros(m))


def _triangle(m: int) -> np.ndarray:
    n = np.arange(1, (m + 1) // 2 + 1, dtype=np.float64)
    if m % 2 == 0:
        w = (2 * n - 1.0) / m
        return np.concatenate([w, w[::-1]])
    w = 2 * n / (m + 1.0)
    return np.concatenate([w, w[-2::-1]])


def _parzen(m: int) -> np.ndarray:
    n = np.arange(-(m - 1) / 2.0, (m - 1) / 2.0 + 0.5, 1.0)
    r = np.abs(n) / (m / 2.0)
    return np.where(np.abs(n) <= (m - 1) / 4.0, 1 - 6 * r**2.0 + 6 * r**3.0, 2 * (1 - r) ** 3.0)


def _bohman(m: int) -> np.ndarray:
    x = np.abs(np.linspace(-1, 1, m)[1:-1])
    w = (1 - x) * np.cos(np.pi * x) + 1.0 / np.pi * np.sin(np.pi * x)
    return np.concatenate([[0.0], w, [0.0]])


def _bartlett(m: int) -> np.ndarray:
    n = np.arange(0, m, dtype=np.float64)
    return np.where(n <= (m - 1) / 2.0, 2.0 * n / (m - 1), 2.0 - 2.0 * n / (m - 1))


def _tukey(m: int, alpha: float = 0.5) -> np.ndarray:
    n = np.arange(0, m, dtype=np.float64)
    width = math.floor(alpha * (m - 1) / 2.0)
    n1, n2, n3 = n[: width + 1], n[width + 1 : m - width - 1], n[m - width - 1 :]
    w1 = 0.5 * (1 + np.cos(np.pi * (-1 + 2.0 * n1 / alpha / (m - 1))))
    w3 = 0.5 * (1 + np.cos(np.pi * (-2.0 / alpha + 1 + 2.0 * n3 / alpha / (m - 1))))
    return np.concatenate([w1, np.ones(n2.shape), w3])


def _barthann(m: int) -> np.ndarray:
    x = np.abs(np.arange(0, m, dtype=np.float64) / (m - 1.0) - 0.5)
    return 0.62 - 0.48 * x + 0.38 * np.cos(2 * np.pi * x)


def _cosine(m: int) -> np.ndarray:
    return np.sin(np.pi / m * (np.arange(m, dtype=np.float64) + 0.5))


def _exponential(m: int, tau: float = 1.0) -> np.ndarray:
    return np.exp(-np.abs(np.arange(0, m, dtype=np.float64) - (m - 1) / 2) / tau)


def _taylor(m: int, nbar: int = 4, sll: float = 30.0) -> np.ndarray:
    """SciPy's Taylor window with its defaults (4 nearly constant sidelobes, 30 dB down), normalized to 1."""
    a = np.arccosh(10 ** (sll / 20)) / np.pi
    s2 = nbar**2 / (a**2 + (nbar - 0.5) ** 2)
    ma = np.arange(1, nbar, dtype=np.float64)
    signs = np.where(np.arange(nbar - 1) % 2 == 0, 1.0, -1.0)
    m2 = ma * ma
    fm = np.empty(nbar - 1)
    for i in range(nbar - 1):
        numer = signs[i] * np.prod(1 - m2[i] / s2 / (a**2 + (ma - 0.5) ** 2))
        denom = 2 * np.prod(1 - m2[i] / m2[:i]) * np.prod(1 - m2[i] / m2[i + 1 :])
        fm[i] = numer / denom

    def w(n: np.ndarray | float) -> np.ndarray:
        return 1 + 2 * np.matmul(fm, np.cos(2 * np.pi * ma[:, np.newaxis] * (n - m / 2.0 + 0.5) / m))

    return w(np.arange(m, dtype=np.float64)) / w((m - 1) / 2)


def _lanczos(m: int) -> np.ndarray:
    def right(start: float) -> np.ndarray:
        return np.sinc(2.0 * np.arange(start, m, dtype=np.float64) / (m - 1) - 1.0)

    if m % 2 == 0:
        half = right(m / 2)
        return np.concatenate([half[::-1], half])
    half = right((m + 1) / 2)
    return np.concatenate([half[::-1], [1.0], half])


_FUNCTIONS = {
    ("barthann", "brthan", "bth"): _barthann,
    ("bartlett", "bart", "brt"): _bartlett,
    ("blackman", "black", "blk"): lambda m: _cosines(m, (0.42, 0.5, 0.08)),
    ("blackmanharris", "blackharr", "bkh"): lambda m: _cosines(m, (0.35875, 0.48829, 0.14128, 0.01168)),
    ("bohman", "bman", "bmn"): _bohman,
    ("boxcar", "box", "ones", "rect", "rectangular"): np.ones,
    ("cosine", "halfcosine"): _cosine,
    ("exponential", "poisson"): _exponential,
    ("flattop", "flat", "flt"): lambda m: _cosines(m, (0.21557895, 0.41663158, 0.277263158, 0.083578947, 0.006947368)),
    ("hamming", "hamm", "ham"): lambda m: _cosines(m, (0.54, 1.0 - 0.54)),
    ("hann", "han"): lambda m: _cosines(m, (0.5, 0.5)),
    ("lanczos", "sinc"): _lanczos,
    ("nuttall", "nutl", "nut"): lambda m: _cosines(m, (0.3635819, 0.4891775, 0.1365995, 0.0106411)),
    ("parzen", "parz", "par"): _parzen,
    ("taylor", "taylorwin"): _taylor,
    ("triangle", "triang", "tri"): _triangle,
    ("tukey", "tuk"): _tukey,
}
WINDOWS = {name: function for names, function in _FUNCTIONS.items() for name in names}
"""Every window name `scipy.signal.get_window` takes without parameters, and its function."""
NEEDS_PARAMETERS = (
    *("chebwin", "cheb", "dpss", "gaussian", "gauss", "gss", "general_cosine", "general_gaussian", "general_gauss"),
    *("ggs", "general_hamming", "kaiser", "ksr", "kaiser_bessel_derived", "kbd"),
)
"""Window names SciPy knows only with parameters (pass the window's values instead)."""


def split(name: str) -> tuple[str, bool | None]:
    """A window name without SciPy's ``_periodic``/``_symmetric`` suffix, and what the suffix says (None if none)."""
    for suffix, periodic in (("_periodic", True), ("_symmetric", False)):
        if name.endswith(suffix):
            return name[: -len(suffix)], periodic
    return name, None


def window(name: str, length: int, periodic: bool) -> np.ndarray:
    """``scipy.signal.get_window(name, length, fftbins=periodic)`` for a name of `WINDOWS`, in float64."""
    base, forced = split(name)
    periodic = periodic if forced is None else forced
    if length <= 1:
        return np.ones(length)
    m = length + 1 if periodic else length  # a periodic window is the symmetric one of length + 1, truncated
    return WINDOWS[base](m)[:length].astype(np.float64)
