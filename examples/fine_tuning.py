"""Fine-tuning initialization: a pretrained checkpoint grows a vocabulary and gains a new head.

A small GPT-style tree of `ParamSpec`s is "pretrained" (initialized from one key, standing for a checkpoint);
the fine-tuning model has 8 more tokens and a new classification head. The embedding is resized with
transformers' `mean_resizing` (old rows bitwise kept), only the missing head is initialized (`existing=`:
bitwise what a full initialization gives it, nothing drawn for the rest), and `jinit.audit` against the
checkpoint confirms that exactly the new head is freshly drawn and that no two parameters share a key.

Run: ``.venv/bin/python examples/fine_tuning.py`` (a few seconds).
"""

import jax
import numpy as np

import jinit

VOCAB, WIDTH, LAYERS, ADDED, CLASSES = 512, 64, 4, 8, 3


def specs(vocab, head):
    tree = {"wte": jinit.ParamSpec((vocab, WIDTH), jinit.normal(0.02))}
    for i in range(LAYERS):
        tree[f"h{i}"] = {
            "attn": jinit.ParamSpec((WIDTH, 3 * WIDTH), jinit.packed(jinit.normal(0.02), 3)),
            "proj": jinit.ParamSpec((WIDTH, WIDTH), jinit.scaled(jinit.normal(0.02), 1 / np.sqrt(2 * LAYERS))),
            "mlp": jinit.ParamSpec((WIDTH, 4 * WIDTH), jinit.normal(0.02)),
            "bias": jinit.ParamSpec((WIDTH,), jinit.zeros),
        }
    if head:
        tree["head"] = jinit.ParamSpec((WIDTH, CLASSES), jinit.glorot_uniform())
    return tree


def main():
    checkpoint = jinit.init_tree(jax.random.key(0), specs(VOCAB, head=False))  # "pretrained"
    key = jax.random.key(1)
    resize_key, init_key = jax.random.split(key)

    # More tokens: new rows from the old rows' mean and covariance; the old rows are kept, bitwise
    wte = jinit.resize_rows(resize_key, checkpoint["wte"], VOCAB + ADDED, "mean_resizing")
    assert np.array_equal(wte[:VOCAB], checkpoint["wte"])

    # Only what the checkpoint lacks is drawn: the head
    target = specs(VOCAB + ADDED, head=True)
    existing = dict(checkpoint, wte=wte)
    params = jinit.init_tree(init_key, target, existing=existing)
    full = jinit.init_tree(init_key, target)
    assert np.array_equal(params["head"], full["head"])  # what a full initialization gives it
    assert params["h0"]["mlp"] is checkpoint["h0"]["mlp"]  # passed through, not copied

    # The audit: the new head is fresh, every kept parameter is flagged as the checkpoint's (as meant here),
    # and no two parameters come from one key
    report = jinit.audit(params, target, reference=checkpoint)  # wte has another shape there: not compared
    kept = {row.path for row in report.rows if "not re-initialized" in row.reason}
    reused = [row.path for row in report.rows if "one key" in row.reason]
    assert "head" not in kept and not reused, str(report)
    random_kept = {p for p in kept if not p.endswith("bias")}
    print(f"Resized the embedding to {wte.shape[0]} rows, the old ones bitwise kept; drew only the new head.")
    print(f"Fine-tuning: the new head is fresh, {len(random_kept)} kept parameters match the checkpoint, no key reuse")


if __name__ == "__main__":
    main()
