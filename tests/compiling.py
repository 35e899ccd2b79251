"""What XLA compiles while a block runs: `compiled` yields the list of compiled function names, filled as the
block runs (from JAX's monitoring events, so every path that compiles is seen: jit, eager operations, AOT)."""

import contextlib
from collections.abc import Iterator

import jax


@contextlib.contextmanager
def compiled() -> Iterator[list[str]]:
    names: list[str] = []

    def listen(event: str, duration: float, fun_name: str | None = None, **_: object) -> None:
        if event.endswith("backend_compile_duration"):
            names.append(str(fun_name))

    jax.monitoring.register_event_duration_secs_listener(listen)
    try:
        yield names
    finally:
        jax.monitoring.unregister_event_duration_listener(listen)
