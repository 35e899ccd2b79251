"""An initialization bug caught by `jinit.audit`: GPT-2's residual projections without their scaling.

GPT-2 scales the two projections that write into the residual stream, ``attn.c_proj`` and ``mlp.c_proj``, by
``1 / sqrt(2 * n_layer)``: their weights are ``N(0, (0.02 / sqrt(2 * n_layer))**2)``, the other weights
``N(0, 0.02**2)``. When initializers are chosen by matching parameter names, one rule too general placed
before the specific one silently skips that scaling, as happened to Hugging Face's GPT-2
(transformers#47458, #47459): the model trains, only worse, and nothing fails.

Here the rules are in that wrong order: ``(".*kernel", normal(0.02))`` comes first and matches the residual
projections too, so ``jinit.init_like`` never reaches their rule. `jinit.audit` compares every parameter with
what the correct specs say it should be, measuring its mean and standard deviation on the device and testing
each against its exact sampling error (Bonferroni-corrected over all the tests, family-wise alpha 1e-3). It
flags exactly the 24 residual projections (12 layers, 2 each), and nothing else.

The shapes are GPT-2 small's (vocabulary 50257, context 1024, width 768, 12 layers); ``--width``, ``--vocab``
and ``--context`` shrink them (the flags do not change). ``--plot audit.png`` also draws the z-scores (needs
matplotlib).

Run: ``.venv/bin/python examples/audit_gpt2.py [--width 768] [--plot audit.png]`` (a few seconds).
"""

import argparse
import math
import time

import jax

import jinit

LAYERS, STD = 12, 0.02
RESIDUAL = jinit.scaled(jinit.normal(STD), 1 / math.sqrt(2 * LAYERS))


def dense(n_in, n_out, init):
    return {"kernel": jinit.ParamSpec((n_in, n_out), init), "bias": jinit.ParamSpec((n_out,), jinit.zeros)}


def layer_norm(width):
    return {"scale": jinit.ParamSpec((width,), jinit.ones), "bias": jinit.ParamSpec((width,), jinit.zeros)}


def gpt2_specs(vocab, context, width):
    """GPT-2's parameters and how each should be initialized, as a tree of `jinit.ParamSpec`."""
    block = {
        "ln_1": layer_norm(width),
        "attn": {"c_attn": dense(width, 3 * width, jinit.normal(STD)), "c_proj": dense(width, width, RESIDUAL)},
        "ln_2": layer_norm(width),
        "mlp": {"c_fc": dense(width, 4 * width, jinit.normal(STD)), "c_proj": dense(4 * width, width, RESIDUAL)},
    }
    return {
        "wte": jinit.ParamSpec((vocab, width), jinit.normal(STD)),
        "wpe": jinit.ParamSpec((context, width), jinit.normal(0.01)),
        "h": [block] * LAYERS,
        "ln_f": layer_norm(width),
    }


BUGGY_RULES = [  # the general kernel rule first: it shadows the residual projections' rule
    (r"wte", jinit.normal(STD)),
    (r"wpe", jinit.normal(0.01)),
    (r".*kernel", jinit.normal(STD)),
    (r".*c_proj/kernel", RESIDUAL),  # never reached
    (r".*/scale", jinit.ones),
    (r".*bias", jinit.zeros),
]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=768)
    parser.add_argument("--vocab", type=int, default=50257)
    parser.add_argument("--context", type=int, default=1024)
    parser.add_argument("--plot", help="also save a plot of the audit to this file (needs matplotlib)")
    args = parser.parse_args()

    specs = gpt2_specs(args.vocab, args.context, args.width)
    abstract = jax.eval_shape(jinit.init_tree, jax.random.key(0), specs)
    start = time.perf_counter()
    params = jinit.init_like(jax.random.key(0), abstract, BUGGY_RULES)  # the bug
    report = jinit.audit(params, specs)
    elapsed = time.perf_counter() - start
    print(report)
    if args.plot:
        report.plot(args.plot)
        print(f"Wrote {args.plot}")

    residual = {f"h/{i}/{part}/c_proj/kernel" for i in range(LAYERS) for part in ("attn", "mlp")}
    assert set(report.flagged) == residual, sorted(set(report.flagged) ^ residual)
    fixed = jinit.init_tree(jax.random.key(0), specs)  # the specs themselves: nothing to flag
    assert jinit.audit(fixed, specs).ok
    print(
        f"Audit: flagged exactly the {len(residual)} residual projections (h/*/attn/c_proj/kernel, "
        f"h/*/mlp/c_proj/kernel) of {len(report.rows)} parameters; the correct initialization passes "
        f"({elapsed:.1f} s to initialize and audit)."
    )


if __name__ == "__main__":
    main()
