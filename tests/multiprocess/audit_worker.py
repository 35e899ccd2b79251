"""One process of a multi-process audit (launched by tests/test_provenance.py).

Arguments: coordinator port, number of processes, this process's id, output directory.
Initializes a replicated and a sharded parameter with `init_tree` over a mesh spanning every process (replicas
equal), adds a replicated parameter made from a per-process seed (replicas that differ, the bug of keras#21261),
audits all three, and writes the flagged paths and reasons to ``<output>/<process id>.json``.
"""

import json
import os
import sys

port, processes, process_id, output = sys.argv[1:5]
os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"

import jax  # noqa: E402

jax.config.update("jax_cpu_collectives_implementation", "gloo")
jax.distributed.initialize(f"localhost:{port}", num_processes=int(processes), process_id=int(process_id))

import numpy as np  # noqa: E402
from jax.sharding import NamedSharding  # noqa: E402
from jax.sharding import PartitionSpec as P  # noqa: E402

import jinit  # noqa: E402

mesh = jax.make_mesh((jax.device_count(),), ("x",), axis_types=(jax.sharding.AxisType.Auto,))
specs = {
    "replicated": jinit.ParamSpec((64, 32), jinit.normal(1.0), sharding=P()),
    "sharded": jinit.ParamSpec((64, 32), jinit.normal(1.0), sharding=P("x", None)),
}
params = jinit.init_tree(jax.random.key(0), specs, mesh=mesh)
local = np.asarray(jinit.normal(1.0)(jax.random.key(100 + int(process_id)), (64, 32)))  # a per-process seed
params["per_process"] = jax.make_array_from_process_local_data(NamedSharding(mesh, P()), local, (64, 32))
specs["per_process"] = jinit.ParamSpec((64, 32), jinit.normal(1.0))
report = jinit.audit(params, specs)
with open(os.path.join(output, f"{process_id}.json"), "w") as f:
    json.dump({"flagged": list(report.flagged), "reasons": {row.path: row.reason for row in report.rows}}, f)
jax.distributed.shutdown()
