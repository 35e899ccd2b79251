"""How jinit compiles its own kernels: `jit`, which is `jax.jit`, with XLA:CPU options where that is faster.

XLA:CPU has two code generators for elementwise loops: its fusion emitters, the default, and its older
elemental emitters, which it still ships behind the option ``xla_cpu_use_fusion_emitters=False``. Measured on a
2-core Xeon with jaxlib 0.10.2, the older ones:
- compile a random draw's loop about a third faster (a scanned ViT-L's kernel: 0.23 s rather than 0.35 s);
- run XLA's RngBitGenerator (the ``rbg`` and ``unsafe_rbg`` implementations) about 20% faster: a GPT-2-medium's
  parameters in 2.0 s rather than 2.5 s;
- but run threefry's normal samples of one shape up to 20% slower (``erf_inv``), while they run the rows'
  loops of threefry draws (`jinit._src.rows`) faster: a layer stack's 354 M values in 0.80 s rather than 0.98 s.
XLA:CPU also vectorizes with 256-bit registers where the CPU has 512-bit ones (AVX-512), unless asked
otherwise (``xla_cpu_prefer_vector_width=512``). Integer hashing, most of a draw, runs faster in the wider ones,
on the same Xeon: a GPT-2-medium's parameters under ``rbg`` in 1.4 s rather than 2.0 s, and the rows' CPU time
for a ViT-L's uniform draws 0.30 s rather than 0.40 s. A CPU without AVX-512 keeps its widest registers.
So a kernel asks for both (`OPTIONS`) where it is faster under them (the `older` predicate of `jit`): the draws
whose bits come from RngBitGenerator, the rows' program, and small kernels whose compilation is all their cost
(keys, checks). The per-shape threefry kernels compile as JAX's default, which runs them faster on every later
call.

The options do not give the same values everywhere: the two emitters differ in the last place for ``tan`` and
``cbrt``, the older ones for a float32 ``erf`` of a scalar within ulps of ±1 (``erf(5.36 / sqrt(2))`` is
0.99999988, not 1.0), and the wider registers for a float32 ``rsqrt``, whose AVX-512 approximation is not AVX's
(and XLA writes ``a / sqrt(b)`` as ``a * rsqrt(b)``). So the erf of a truncated normal's bounds, a scalar, is
computed by a kernel compiled as JAX compiles its sampler (`jinit._src.distributions.erf_bounds`; the draws are
given it), and for what jinit's kernels compute, the options give the same bits. That covers integer arithmetic,
threefry, IEEE arithmetic and conversions, ``erf`` and ``erf_inv`` of arrays, ``exp``, ``log``, ``sqrt``, XLA's
RngBitGenerator and LAPACK's QR, and no kernel computes an ``rsqrt``.
tests/test_kernel.py checks this under a listed jaxlib (under any, with ``JINIT_CHECK_KERNEL_OPTIONS=1``):
- every float32 input of the normal and truncated normal transforms;
- the kernels of every family, in every dtype under ``rbg`` and in float32 under ``unsafe_rbg``;
- the rows' program for every family with a law, in four dtypes;
- JAX's own key derivation and bits;
- that none of those kernels, as XLA optimizes them, has an ``rsqrt``.

So the options are used only where that check has passed and the values cannot differ:
- only for jinit's kernels, never for a user's or a framework's computation (a plan's program runs as JAX's);
- only under a jaxlib listed in `CHECKED`, each of which passed tests/test_kernel.py. A newer one compiles
  as JAX does by default until it is checked and listed;
- only at top level: a kernel called under a user's trace is part of the user's program, and compiles with it;
- where XLA refuses them (a jaxlib that dropped the older emitters), that kernel and every later one
  compile as JAX's default (`refused`, the one piece of state, a flag that is never set back).
The options only reach XLA:CPU; other platforms ignore them.
"""

import functools
from collections.abc import Callable
from typing import Any

import jax
from jax.core import Tracer

OPTIONS = {"xla_cpu_use_fusion_emitters": False, "xla_cpu_prefer_vector_width": 512}
"""The XLA compile options of jinit's own kernels, where `enabled`."""

CHECKED = frozenset({"0.10.1", "0.10.2"})
"""The jaxlib releases under which tests/test_kernel.py passed: `OPTIONS` gives JAX's values there, and so
did tests/test_rows.py's loops shared by several laws (`jinit._src.rows.shares_loops`). It fails under 0.9.0 to
0.10.0, whose fusion emitters round ``erf`` of large arguments to 0.99999982 where the older ones give 1.0 (a
truncated normal's bounds beyond 5.4 standard deviations): those compile as JAX does."""

refused = False
"""Whether XLA refused `OPTIONS` once in this process (then no kernel asks for them again)."""


@functools.cache
def jaxlib_version() -> str:
    """The installed jaxlib's version ("" where it does not say: then no release list holds it)."""
    try:
        from jaxlib import version
    except ImportError:  # pragma: no cover - every jaxlib has it; a layout that moved it gets JAX's default
        return ""
    return version.__version__


def checked_jaxlib() -> bool:
    """Whether the installed jaxlib is one of `CHECKED`."""
    return jaxlib_version() in CHECKED


def enabled() -> bool:
    """Whether jinit's kernels are compiled with `OPTIONS` now (a checked jaxlib that has not refused them)."""
    return not refused and checked_jaxlib()


class Kernel:
    """A function jitted twice: with `OPTIONS` for calls at top level where `enabled` and ``older`` of the first
    argument says so (always, if None), and as `jax.jit` does.

    Both give the same values (module docstring). Attributes other than a call (``lower``, ``trace``, the
    cache's size) are those of the plain `jax.jit`, the one a user's trace sees.
    """

    def __init__(self, fun: Callable[..., Any], older: Callable[[Any], bool] | None = None, **jit_kwargs: Any) -> None:
        self.older = older
        options = jit_kwargs.pop("compiler_options", None) or {}
        self.plain = jax.jit(fun, compiler_options=options or None, **jit_kwargs)
        self.fast = jax.jit(fun, compiler_options={**options, **OPTIONS}, **jit_kwargs)
        functools.update_wrapper(self, fun)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        global refused
        if enabled() and not any(isinstance(x, Tracer) for x in jax.tree.leaves((args, kwargs))) and self.asks(args):
            try:
                return self.fast(*args, **kwargs)
            except ValueError:  # under a trace after all (concrete arguments closed over by a user's `jit`)
                pass
            except jax.errors.JaxRuntimeError as error:
                if "compile option" not in str(error):  # (an error of the computation: the plain call raises it)
                    raise
                refused = True
        return self.plain(*args, **kwargs)

    def asks(self, args: tuple) -> bool:
        """Whether a call with `args` asks for `OPTIONS` (``older`` of its first argument; always if None)."""
        return self.older is None or (bool(args) and self.older(args[0]))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.plain, name)


def jit(fun: Callable[..., Any] | None = None, *, older: Callable[[Any], bool] | None = None, **jit_kwargs: Any) -> Any:
    """`Kernel` of `fun`, compiled with the older emitters where ``older(first_argument)`` (always if None):
    ``jit(f, static_argnames=...)``, or as a decorator, ``@jit(static_argnames=..., older=...)``."""
    if fun is None:
        return lambda f: Kernel(f, older, **jit_kwargs)
    return Kernel(fun, older, **jit_kwargs)
