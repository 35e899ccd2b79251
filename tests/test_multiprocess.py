"""`init_tree` across processes (JAX's multi-controller runtime on CPU, gloo collectives): 2 and 4 local
processes of 2 devices each, each generating only its addressable shards, which are checked against a
one-process run, bitwise; with the default threefry and with rbg (docs/guides/sharding.md's table)."""

import os
import sys
import tempfile
from pathlib import Path

import jax
import numpy as np
import pytest

import jinit

HERE = Path(__file__).parent / "multiprocess"
sys.path.insert(0, str(HERE))
from launch import run_workers  # noqa: E402
from specs import specs  # noqa: E402


@pytest.mark.parametrize("processes, impl", [(2, "threefry2x32"), (4, "threefry2x32"), (2, "rbg")])
def test_every_process_generates_its_own_shards_with_the_one_process_values(processes, impl):
    expected = jinit.init_tree(jax.random.key(0, impl=impl), specs(lambda *axes: None))  # unsharded, one process
    with tempfile.TemporaryDirectory() as output:
        run_workers("worker.py", processes, "2", output, impl)
        seen = set()
        for i in range(processes):
            with np.load(os.path.join(output, f"{i}.npz")) as shards:
                assert len(shards.files) > 0
                for entry in shards.files:
                    name, device, index = entry.split("@")
                    region = tuple(
                        slice(*(int(v) if v != "None" else None for v in part.split(":")))
                        for part in index.split("|")
                        if part
                    )
                    np.testing.assert_array_equal(shards[entry], np.asarray(expected[name])[region], err_msg=entry)
                    seen.add((name, int(device)))
    assert {name for name, _ in seen} == set(expected)
    assert len({device for _, device in seen}) == 2 * processes  # every device of every process held shards
