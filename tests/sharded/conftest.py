"""The sharding tests run on 8 simulated CPU devices, in a process of their own (see tests/test_sharded.py).

XLA reads `--xla_force_host_platform_device_count` when JAX starts its CPU backend, so it is set here, when
pytest loads this file, before any test touches a device. Run alone: ``.venv/bin/python -m pytest tests/sharded``.
"""

import os
import sys
from pathlib import Path

FLAG = "--xla_force_host_platform_device_count=8"
if FLAG not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {FLAG}".strip()

sys.path.insert(0, str(Path(__file__).parent.parent))  # the shared table of cases, tests/cases.py

import jax  # noqa: E402

jax.config.update("jax_numpy_rank_promotion", "raise")
if jax.device_count() != 8:
    raise RuntimeError(
        f"tests/sharded needs 8 simulated CPU devices, but JAX started with {jax.device_count()}: run it in a "
        f"process of its own (`python -m pytest tests/sharded`), where nothing has started JAX's backend first."
    )
