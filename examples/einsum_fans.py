"""An attention projection in Flax linen, initialized with the raw shape's fans and with `jinit.einsum_axes`'s.

``nn.Einsum((d, n, h), "btd,dnh->btnh")`` projects ``d``-dimensional tokens onto ``n`` heads of size ``h``.
Flax gives the initializer the kernel's shape and nothing else, so its default ``lecun_normal`` takes the last two
axes for the input and the output, and the rest as a receptive field: ``fan_in = n * d``. Each output element
is a sum over only ``d`` inputs, so the outputs have ``1 / n`` of the variance that LeCun initialization aims to
keep. ``jinit.lecun_normal(**jinit.einsum_axes(equation))`` reads from the equation that the input axis is
``d`` alone.

The script initializes the layer both ways, applies it to unit-variance inputs, and prints the fans, the variance
of the kernel and the variance of the outputs. It exits with an error unless the outputs have variance 1 with
jinit's fans and ``1 / n`` with the default ones (within 5%).

It then does the same for a packed projection: GPT-2's fused ``c_attn``, ``nn.Dense(3 * d)``, holds the query,
key and value projections side by side, so the raw shape's Glorot gives it ``2 / (d + 3d)``, half the variance
of a ``(d, d)`` projection; ``jinit.packed(jinit.glorot_uniform(), 3)`` gives each projection its own fans. The
script exits with an error unless the packed kernel's variance is within 2% of Glorot's ``1 / d``.

Run: ``.venv/bin/python examples/einsum_fans.py`` (a few seconds; needs ``pip install -e '.[flax]'``).
"""

import flax.linen as nn
import jax

import jinit

BATCH, TOKENS, D, HEADS, HEAD_DIM = 4, 64, 512, 8, 64
EQUATION = "btd,dnh->btnh"
SHAPE = (D, HEADS, HEAD_DIM)


def variances(layer: nn.Einsum) -> tuple[float, float]:
    """The variance of the layer's kernel, and of its outputs for standard normal inputs."""
    x = jax.random.normal(jax.random.key(1), (BATCH, TOKENS, D))
    params = layer.init(jax.random.key(0), x)
    return float(params["params"]["kernel"].var()), float(layer.apply(params, x).var())


def main() -> None:
    axes = jinit.einsum_axes(EQUATION)
    rows = [
        ("Flax's default", jinit.compute_fans(SHAPE), nn.Einsum(SHAPE, EQUATION, use_bias=False), 1 / HEADS),
        (
            "jinit.einsum_axes",
            jinit.compute_fans(SHAPE, **axes),
            nn.Einsum(SHAPE, EQUATION, use_bias=False, kernel_init=jinit.lecun_normal(**axes)),
            1.0,
        ),
    ]
    print(f"{EQUATION}, kernel {SHAPE}, einsum_axes = {axes}")
    print(f"{'kernel_init':<20} {'fan_in':>7} {'fan_out':>8} {'kernel var':>12} {'output var':>11}")
    outputs = []
    for name, (fan_in, fan_out), layer, expected in rows:
        kernel_var, output_var = variances(layer)
        print(f"{name:<20} {fan_in:>7} {fan_out:>8} {kernel_var:>12.3e} {output_var:>11.4f}")
        if abs(output_var / expected - 1) > 0.05:
            raise SystemExit(f"{name}: output variance {output_var:.4f}, expected {expected:.4f}")
        outputs.append(output_var)
    x = jax.numpy.ones((1, D))
    raw = nn.Dense(3 * D, kernel_init=jinit.glorot_uniform()).init(jax.random.key(0), x)["params"]["kernel"]
    qkv = nn.Dense(3 * D, kernel_init=jinit.packed(jinit.glorot_uniform(), 3)).init(jax.random.key(0), x)
    packed_var, raw_var = float(qkv["params"]["kernel"].var()), float(raw.var())
    print(
        f"fused c_attn ({D}, {3 * D}): Glorot variance {raw_var:.3e} raw, {packed_var:.3e} packed (1/d = {1 / D:.3e})"
    )
    if abs(packed_var * D - 1) > 0.02:
        raise SystemExit(f"packed: kernel variance {packed_var:.3e}, expected {1 / D:.3e}")
    print(
        f"Einsum fans: the projection's outputs have variance {outputs[0]:.3f} with Flax's default fans "
        f"(fan_in = n * d) and {outputs[1]:.3f} with jinit.einsum_axes (fan_in = d)."
    )


if __name__ == "__main__":
    main()
