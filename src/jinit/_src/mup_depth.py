"""Depth-muP (Yang, Yu, Zhu and Hayou 2023, *Tensor Programs VI*): the residual branches' multiplier and learning
rates of a deeper model, on top of `jinit.mup`'s width scaling. Plain Python on the result of `mup`."""

import math
import re
from collections.abc import Sequence
from typing import Any, NamedTuple

from jinit._src import checks, tree
from jinit._src.mup import OPTIMIZERS, MuP


class DepthMuP(NamedTuple):
    """What `mup_depth` returns: `MuP`'s fields, the branch parameters' learning rates scaled, and the branches'
    multiplier.

    Attributes:
      specs: the target's specs, as `mup` made them (Depth-muP changes no initializer).
      lr_multipliers: `mup`'s, times ``sqrt(base_depth / depth)`` on the residual branches' parameters under
        Adam.
      output_multiplier: `mup`'s.
      kinds: `mup`'s.
      branch_multiplier: multiply each residual branch's output by this float before adding it to the residual
        stream: ``x + branch_multiplier * block(x)``.
    """

    specs: Any
    lr_multipliers: Any
    output_multiplier: float
    kinds: Any
    branch_multiplier: float


def mup_depth(
    result: MuP,
    *,
    base_depth: int,
    depth: int,
    branches: str | Sequence[str],
    optimizer: str = "adam",
) -> DepthMuP:
    """Builds Depth-muP on top of muP: the residual branches' multiplier and learning rates at another depth.

    Depth-muP (Yang et al. 2023, *Tensor Programs VI*, for blocks of one layer; the same ``1 / sqrt(L)`` branch
    scaling as Bordelon et al. 2023, *Depthwise hyperparameter transfer in residual networks*) multiplies each of
    the ``L`` residual branches by ``a / sqrt(L)``, keeps muP's initialization, and scales the learning rate of
    the branches' parameters by ``1 / sqrt(L)`` under Adam and by 1 under SGD. Relative to a tuned base of
    ``base_depth`` blocks, with ``r = sqrt(base_depth / depth)``:

    | what                                   | changed by                 |
    |----------------------------------------|----------------------------|
    | each branch's output (a forward change) | ``r``: `branch_multiplier` |
    | the branches' Adam learning rates      | ``r``                      |
    | the branches' SGD learning rates       | 1                          |
    | initializers, other parameters         | unchanged                  |

    The base's own branch multiplier (``a / sqrt(base_depth)``, 1 for a plain residual network) stays where the
    model has it: the model multiplies its branches by it and by `branch_multiplier`. For blocks of two or more
    layers (transformers) the paper finds no scaling that keeps every block's features diverse as the depth
    grows; ``1 / sqrt(L)`` is still the usual choice there, and this function applies it alike to every
    parameter that `branches` matches.

    Args:
      result: what `jinit.mup` returned for the target's width (at the base width every multiplier is 1).
      base_depth: the number of residual blocks of the tuned model, a positive int.
      depth: the number of residual blocks of the target, a positive int.
      branches: a regex, or a sequence of them, matching the whole path (as `init_tree` writes it:
        ``"blocks/3/mlp/fc/kernel"``) of every parameter inside a residual branch. Each must match some path.
      optimizer: ``"adam"`` (Adam, AdamW and other entrywise-normalized optimizers) or ``"sgd"``: the one that
        `result` was built for.

    Returns:
      A `DepthMuP`: ``(specs, lr_multipliers, output_multiplier, kinds, branch_multiplier)``; `mup_scale`,
      `mu_adam`, `mu_adamw` and `mu_sgd` take it as they take a `MuP`.

    Raises:
      TypeError: `result` is not a `MuP`, a depth is not an int, or `branches` not regexes.
      ValueError: a depth is not positive, a regex is invalid or matches no path, or `optimizer` is unknown.

    Examples:
      >>> import jinit
      >>> def resnet(width, depth):
      ...     blocks = [{"kernel": jinit.ParamSpec((width, width), jinit.he_normal())} for _ in range(depth)]
      ...     return {"in": jinit.ParamSpec((8, width), jinit.he_normal()), "blocks": blocks,
      ...             "out": jinit.ParamSpec((width, 1), jinit.lecun_normal())}
      >>> result = jinit.mup_depth(jinit.mup(resnet(64, 16), resnet(64, 16)), base_depth=4, depth=16,
      ...                          branches=r"blocks/\\d+/.*")
      >>> result.branch_multiplier, result.lr_multipliers["blocks"][0], result.lr_multipliers["in"]
      (0.5, {'kernel': 0.5}, 1.0)
    """
    if not isinstance(result, MuP):
        raise TypeError(
            f"Argument `result` must be the `jinit.MuP` that `jinit.mup` returns. {checks.received('result', result)}"
        )
    base_depth = checks.integer("base_depth", base_depth, minimum="positive")
    depth = checks.integer("depth", depth, minimum="positive")
    optimizer = checks.choice("optimizer", optimizer, OPTIMIZERS)
    patterns = _patterns(branches)
    factor = 1.0 if base_depth == depth else math.sqrt(base_depth / depth)
    lr_factor = factor if optimizer == "adam" else 1.0
    flat, treedef = tree._flatten(result.lr_multipliers, "result.lr_multipliers")
    unused = set(patterns)
    lrs = []
    for path, lr in flat:
        matched = [pattern for pattern in patterns if pattern.fullmatch(path)]
        unused.difference_update(matched)
        lrs.append(lr * lr_factor if matched else lr)
    if unused:
        raise ValueError(
            f"Argument `branches` has regexes that match no parameter path: "
            f"{', '.join(sorted(repr(p.pattern) for p in unused))}. Paths are written as `init_tree` writes them, "
            f"e.g. {checks.show(flat[0][0] if flat else '')}. {checks.received('branches', branches)}"
        )
    return DepthMuP(result.specs, treedef.unflatten(lrs), result.output_multiplier, result.kinds, factor)


def _patterns(value: Any) -> list[re.Pattern]:
    """Checks `branches`: one regex or a non-empty sequence of them."""
    items = [value] if isinstance(value, str | re.Pattern) else value
    if not isinstance(items, Sequence) or not items:
        raise TypeError(
            f"Argument `branches` must be a regex or a non-empty sequence of regexes. "
            f"{checks.received('branches', value)}"
        )
    patterns = []
    for item in items:
        if not (isinstance(item, str) or (isinstance(item, re.Pattern) and isinstance(item.pattern, str))):
            raise TypeError(f"Argument `branches` must hold regexes (strings). {checks.received('branches', value)}")
        try:
            patterns.append(re.compile(item))
        except (re.error, OverflowError, RecursionError) as err:
            raise ValueError(
                f"Argument `branches` holds an invalid regex ({err}). {checks.received('regex', item)}"
            ) from None
    return patterns
