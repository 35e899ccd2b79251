"""A transformer initialized already sharded over 8 simulated CPU devices, from one key.

The mesh is 2 x 4 ("data", "model"). As in Megatron-style tensor parallelism, the first matmul of each block is
split by columns over "model" and the second by rows; the embedding is split over all 8 devices; layer norms
are replicated. `jinit.init_tree` creates every parameter with its sharding (each device generates only its own
shards of the random parameters), then the script checks that every value is bitwise what the same tree gives
unsharded, on one device, and prints where the parameters live.

Run: ``.venv/bin/python examples/sharded_init.py`` (a few seconds). On a machine with 8 accelerators, drop the
XLA_FLAGS line and the same code shards over them.
"""

import os

os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count=8"

import jax
import numpy as np
from jax.sharding import PartitionSpec as P

import jinit

VOCAB, WIDTH, LAYERS = 4096, 256, 4
COLUMNS, ROWS = P(None, "model"), P("model", None)


def block():
    dense = jinit.ParamSpec
    return {
        "ln_1": {"scale": dense((WIDTH,), jinit.ones), "bias": dense((WIDTH,), jinit.zeros)},
        "attn": {"qkv": dense((WIDTH, 3 * WIDTH), jinit.glorot_uniform(), sharding=COLUMNS),
                 "out": dense((WIDTH, WIDTH), jinit.orthogonal(), sharding=ROWS)},
        "mlp": {"fc": dense((WIDTH, 4 * WIDTH), jinit.he_normal(), sharding=COLUMNS),
                "fc_bias": dense((4 * WIDTH,), jinit.zeros, sharding=P("model")),
                "proj": dense((4 * WIDTH, WIDTH), jinit.truncated_normal(0.02), sharding=ROWS)},
    }  # fmt: skip


def main():
    mesh = jax.make_mesh((2, 4), ("data", "model"))
    specs = {"wte": jinit.ParamSpec((VOCAB, WIDTH), jinit.normal(0.02), sharding=P(("data", "model"), None)),
             "blocks": [block() for _ in range(LAYERS)]}  # fmt: skip
    key = jax.random.key(0)

    params = jinit.init_tree(key, specs, mesh=mesh)
    unsharded = jax.tree.map(
        lambda s: jinit.ParamSpec(s.shape, s.init, s.dtype), specs, is_leaf=lambda x: isinstance(x, jinit.ParamSpec)
    )
    reference = jinit.init_tree(key, unsharded)  # one device, no sharding

    print(f"{len(jax.devices())} devices, mesh {dict(mesh.shape)}\n")
    print(f"{'parameter':22} {'shape':>11} {'sharding':>24} {'shard':>10} {'bitwise':>8}")
    mismatched = []
    for (path, x), ref in zip(jax.tree_util.tree_leaves_with_path(params), jax.tree.leaves(reference), strict=True):
        name = jax.tree_util.keystr(path, simple=True, separator="/")
        same = np.array_equal(np.asarray(x), np.asarray(ref))
        if not same:
            mismatched.append(name)
        if name.startswith("blocks/") and not name.startswith("blocks/0/"):
            continue
        shard = x.addressable_shards[0].data.shape
        print(
            f"{name:22} {'x'.join(map(str, x.shape)):>11} {x.sharding.spec!s:>24} "
            f"{'x'.join(map(str, shard)):>10} {'yes' if same else 'NO':>8}"
        )
    print(f"... blocks 1 to {LAYERS - 1} are sharded like block 0")
    total = sum(x.nbytes for x in jax.tree.leaves(params))
    per_device = sum(s.data.nbytes for x in jax.tree.leaves(params) for s in x.addressable_shards
                     if s.device == jax.devices()[0])  # fmt: skip
    print(f"\n{total / 2**20:.1f} MiB of parameters; device 0 holds {per_device / 2**20:.1f} MiB of them.")
    if mismatched:
        raise SystemExit(f"Differs from the unsharded values: {', '.join(mismatched)}")
    print("Every parameter is bitwise equal to its unsharded value.")


if __name__ == "__main__":
    main()
