"""One process of a multi-process initialization (launched by tests/test_multiprocess.py).

Arguments: coordinator port, number of processes, this process's id, devices per process, output directory, PRNG
implementation.
Initializes the same tree with `init_tree` over a mesh spanning every process, then writes the shards this
process holds (their device, index and values) to ``<output>/<process id>.npz``.
"""

import os
import sys

port, processes, process_id, devices, output, impl = sys.argv[1:7]
os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"

import jax  # noqa: E402

jax.config.update("jax_cpu_collectives_implementation", "gloo")
jax.distributed.initialize(f"localhost:{port}", num_processes=int(processes), process_id=int(process_id))

import numpy as np  # noqa: E402
from jax.sharding import PartitionSpec as P  # noqa: E402

import jinit  # noqa: E402

sys.path.insert(0, os.path.dirname(__file__))
from specs import specs  # noqa: E402

mesh = jax.make_mesh((jax.device_count(),), ("x",), axis_types=(jax.sharding.AxisType.Explicit,))
params = jinit.init_tree(jax.random.key(0, impl=impl), specs(P), mesh=mesh)
shards = {}
for path, array in jax.tree_util.tree_flatten_with_path(params)[0]:
    name = jax.tree_util.keystr(path, simple=True, separator="/")
    assert array.shape == specs(P)[name].shape and not array.is_fully_addressable
    for shard in array.addressable_shards:
        index = "|".join(f"{s.start}:{s.stop}" for s in shard.index)
        shards[f"{name}@{shard.device.id}@{index}"] = np.asarray(shard.data)
np.savez(os.path.join(output, f"{process_id}.npz"), **shards)
jax.distributed.shutdown()
