"""The audit's false-positive rate, measured: correctly initialized parameters audited over many keys, per
initializer and dtype (narrow floats and narrow truncations included), at a family-wise alpha; each rate should
be at most alpha (within its binomial error, printed as a 99% upper bound).

Run: ``.venv/bin/python benchmarks/audit_rates.py [--keys 100] [--alpha 0.05]`` (a few minutes on 2 cores).
"""

import argparse
import time

import jax
from scipy import stats

import jinit

DTYPES = ["float32", "bfloat16", "float16", "float8_e4m3fn", "float8_e5m2", "float8_e3m4"]
CASES = [
    ("glorot_uniform 2048x2048", jinit.glorot_uniform(), (2048, 2048)),
    ("normal(0.01, mean=1) 1024x1024", jinit.normal(0.01, mean=1.0), (1024, 1024)),
    ("random_uniform(0.9, 1.1) 512x512", jinit.random_uniform(0.9, 1.1), (512, 512)),
    ("truncated_normal [0.1, 0.2] 512x512", jinit.truncated_normal(1.0, lower=0.1, upper=0.2), (512, 512)),
    ("truncated_normal [0.1, 0.100001] 512x512", jinit.truncated_normal(1.0, lower=0.1, upper=0.100001), (512, 512)),
    ("scaled(he_uniform, 0.3) 512x512", jinit.scaled(jinit.he_uniform(), 0.3), (512, 512)),
    ("packed(orthogonal, 3) 128x384", jinit.packed(jinit.orthogonal(), 3), (128, 384)),
]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=100)
    parser.add_argument("--alpha", type=float, default=0.05)
    args = parser.parse_args()
    print(f"jax {jax.__version__}; {args.keys} keys per case, alpha={args.alpha}")
    print(f"{'case':44} {'dtype':14} {'flagged':>8} {'rate':>6} {'99% upper':>10} {'seconds':>8}")
    for name, init, shape in CASES:
        for dtype in DTYPES:
            specs = {"w": jinit.ParamSpec(shape, init, dtype)}
            start = time.perf_counter()
            try:
                flagged = sum(
                    not jinit.audit(jinit.init_tree(jax.random.key(k), specs), specs, alpha=args.alpha).ok
                    for k in range(args.keys)
                )
            except ValueError as err:  # an interval that holds no value of the dtype: refused
                print(f"{name:44} {dtype:14} {'refused':>8}  ({str(err)[:60]}...)")
                continue
            upper = stats.beta(flagged + 1, args.keys - flagged).ppf(0.99)  # Clopper-Pearson
            seconds = time.perf_counter() - start
            print(f"{name:44} {dtype:14} {flagged:8d} {flagged / args.keys:6.3f} {upper:10.3f} {seconds:8.1f}")


if __name__ == "__main__":
    main()
