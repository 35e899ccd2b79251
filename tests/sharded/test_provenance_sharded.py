"""`jinit.audit`'s replica check on 8 devices: replicas of a block that differ across devices are flagged, sharded
and replicated parameters drawn by `init_tree` are not, and the key-reuse check reads sharded parameters."""

import jax
import numpy as np
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

import jinit


def test_replicas_that_differ_across_devices_are_flagged():
    mesh = jax.make_mesh((4, 2), ("x", "y"), axis_types=(jax.sharding.AxisType.Auto,) * 2)
    specs = {
        "replicated": jinit.ParamSpec((64, 32), jinit.normal(1.0), sharding=P()),
        "rows": jinit.ParamSpec((64, 32), jinit.normal(1.0), sharding=P("x", None)),  # replicated over y
        "both": jinit.ParamSpec((64, 32), jinit.normal(1.0), sharding=P("x", "y")),
    }
    params = jinit.init_tree(jax.random.key(0), specs, mesh=mesh)
    assert jinit.audit(params, specs).ok
    sharding = NamedSharding(mesh, P("x", None))
    blocks = sharding.devices_indices_map((64, 32))
    base = np.asarray(params["rows"])
    pieces = []
    for device, index in blocks.items():
        block = base[index].copy()
        if device == mesh.devices[1, 1]:  # one replica of block 1 of rows differs in one element
            block[0, 0] = -block[0, 0]
        pieces.append(jax.device_put(block, device))
    params["rows"] = jax.make_array_from_single_device_arrays((64, 32), sharding, pieces)
    report = jinit.audit(params, specs)
    assert report.flagged == ("rows",)
    reasons = {row.path: row.reason for row in report.rows}
    assert "its replicas of block [16:32, :] differ across devices" in reasons["rows"]


@pytest.mark.parametrize("axis_type", [jax.sharding.AxisType.Auto, jax.sharding.AxisType.Explicit])
def test_key_reuse_is_found_in_sharded_parameters(axis_type):
    mesh = jax.make_mesh((8,), ("x",), axis_types=(axis_type,))
    key = jax.random.key(4)
    a = jinit.he_normal()(key, (64, 64), out_sharding=NamedSharding(mesh, P("x", None)))
    b = jinit.he_normal()(key, (64, 64), out_sharding=NamedSharding(mesh, P(None, "x")))
    c = jinit.he_normal()(key, (64, 256), out_sharding=NamedSharding(mesh, P("x", None)))  # a longer prefix
    report = jinit.audit({"a": a, "b": b, "c": c}, [(".*", jinit.he_normal())])
    reasons = {row.path: row.reason for row in report.rows}
    assert report.flagged == ("a", "b", "c") and "bitwise equal to 'b'" in reasons["a"]
    assert "correlation +1.000000 with 'a' over 4096 elements" in reasons["c"]
