"""Many draws of the positioned stream in one small program, whatever their shapes: a model's parameters
without a kernel compiled per parameter or per stacked site.

A plan (`jinit._src.plan`) drew a scanned model's stacked parameters by one kernel that traces each site's
draw, batched over its layers' keys: XLA compiles a loop per site, with threefry's rounds and the sampler's
arithmetic in each (0.4 s of lowering and 0.24 s of compiling for a ViT-L's 10 sites, a third of its first
call), and an unrolled model's by the tree engine, one kernel call per parameter. Yet with JAX's partitionable
threefry, element ``i`` of a draw depends only on its key and on ``i`` (`jinit._src.threefry`), so every draw is
made of rows: row ``r`` of a draw of ``n`` elements is its elements ``r * width`` to ``(r + 1) * width``, drawn
from the key's stream at that position. A stacked parameter of ``L`` layers is ``L * n / width`` such rows, one
after another in memory (its layers along the leading axis, the layers' keys in row-major order), and so is
every parameter of the same distribution: `draw` hands each a view of one array of ``[rows, width]``, which one
loop fills. One program draws every distribution of a call, a loop for each; it is compiled once per the
distributions' structures, dtypes, widths and numbers of rows, never per shape, and runs as fast as the kernels
it replaces (a ViT-L's 300 M values in 0.4 s on a 2-core Xeon).

Laws of one class that differ only in their hyperparameters (a Glorot uniform's variance, which follows each
layer's fans) share a loop where the class allows it (`Distribution.per_row`, under a jaxlib of
`jinit._src.kernel.CHECKED`): the loop takes each hyperparameter as one value per row, each law's for its own
rows. A loop is most of what the program costs to compile (about 0.03 s of XLA's time each, on that Xeon), so a
model compiles one per class of distribution it uses, however many layer widths it has.

The program hashes the rows' words once per width, for all its distributions of that width (`_words`), and
gives each distribution's sampler its rows' words as keys of `threefry.drawn`, from which JAX's own samplers read
exactly the bits the rows' own keys would give them. XLA still computes each distribution's words in that
distribution's loop (no array of words is made), but the hash is traced and lowered once, not once per
distribution and again for a key alone (as a `jax.custom_batching.custom_vmap` rule does): 0.03 s less of a
stacked ViT-L's first call, whose program had a uniform and a normal. A sampler that reads its key otherwise
(64-bit words, a split: complex or float64 draws, which are known ahead, or a sampler JAX changed) is drawn from
its rows' `threefry.ROW` keys, as before.

Its values are JAX's: each row is exactly what the engine's stream draws at that position (`engine._piece`),
which is what the tests check against `jax.random` and the frameworks. A row ends within its draw (of fewer than
``2**32`` elements), so it is drawn with `threefry.ROW`, which leaves out the carry into the position's high word
that no row has. The rows draw eagerly, on one CPU device, with JAX's partitionable threefry where the stream
follows it (`engine.positioned`); elsewhere the plan's kernel draws. What it costs: the parameters of one
distribution share one buffer, freed when the last of them is, and as host memory adopted by JAX, a donation of
one to a compiled step does not reuse its memory (as for the engine's stream).
"""

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jinit._src import engine, kernel, threefry
from jinit._src.distributions import Distribution, compute_dtype

WIDTH = 1024
"""The widest row: wide enough that a row's overhead is nothing beside its values."""
NARROWEST = 64
"""The narrowest row: a draw whose size no power of two from here up divides is left to the plan's kernel."""


def width(n: int) -> int | None:
    """The row width of a draw of `n` elements (the largest power of two dividing it, at most `WIDTH`), or None if
    that is narrower than `NARROWEST`."""
    if n <= 0:
        return None
    w = min(WIDTH, n & -n)
    return w if w >= NARROWEST else None


def drawable(law: Distribution, n: int, dtype: np.dtype) -> bool:
    """Whether the rows draw `law`'s draws of `n` elements in `dtype`: rows of at least `NARROWEST` elements,
    and not the one distribution whose values XLA changes when fused (`Distribution.complex_op_by_op`)."""
    return width(n) is not None and not (law.complex_op_by_op and np.dtype(dtype).kind == "c")


@dataclasses.dataclass(frozen=True)
class Request:
    """A leaf to draw: `law` for each of its keys (``uint32[draws, 2]`` of threefry key data, row-major over the
    leaf's leading axes) in `dtype`, each draw of `n` elements, laid out as `shape`."""

    law: Distribution
    data: np.ndarray
    n: int
    shape: tuple[int, ...]
    dtype: np.dtype


def draw(requests: list[Request]) -> list[jax.Array]:
    """Each request's leaf: those of one distribution and dtype are views of one array, every array filled by one
    program (a loop each)."""
    groups: dict[tuple, list[int]] = {}
    for i, request in enumerate(requests):
        groups.setdefault(_group(request), []).append(i)
    laws, datas, widths, dtypes = [], [], [], []
    for indices in groups.values():
        first = requests[indices[0]]
        w = min(width(requests[i].n) or 0 for i in indices)
        laws.append(_law([requests[i] for i in indices], w))
        datas.append(_rows([requests[i] for i in indices], w))
        widths.append(w)
        dtypes.append(first.dtype)
    args = (tuple(datas), tuple(laws))
    try:
        filled = _fill(*args, widths=tuple(widths), dtypes=tuple(dtypes), hashed=tuple(map(hashable, dtypes)))
    except threefry.NotOneRow:  # (a sampler that reads its key otherwise: each row from its key, as before)
        filled = _fill(*args, widths=tuple(widths), dtypes=tuple(dtypes), hashed=(False,) * len(dtypes))
    out: list[Any] = [None] * len(requests)
    for indices, array, w in zip(groups.values(), filled, widths, strict=True):
        host, row = np.asarray(array), 0  # a view of the kernel's own buffer
        for i in indices:
            request = requests[i]
            rows = request.data.shape[0] * request.n // w
            out[i] = engine.adopt(host[row : row + rows].reshape(request.shape), array)
            row += rows
    return out


def _law(members: list[Request], w: int) -> Distribution:
    """The law of a group's loop: the members' own where they all have the same; else the law with each
    hyperparameter one value per row, each member's for its rows (`Distribution.per_row`)."""
    first = members[0].law
    if len({_hyperparameters(m.law) for m in members}) == 1:
        return first
    counts = [m.data.shape[0] * m.n // w for m in members]
    columns = zip(*(jax.tree.leaves(m.law) for m in members), strict=True)
    return jax.tree.unflatten(jax.tree.structure(first), [np.repeat(_canonical(c), counts) for c in columns])


def _canonical(values: tuple) -> np.ndarray:
    """One hyperparameter of several laws, as the program is given each alone: in JAX's canonical dtype."""
    dtype = jax.dtypes.canonicalize_dtype(np.asarray(values[0]).dtype)
    return np.array([np.asarray(v, dtype) for v in values])


def _hyperparameters(law: Distribution) -> tuple:
    """Each hyperparameter's type, dtype and bytes: two laws with the same are the same law, bit for bit."""
    return tuple((type(x), np.asarray(x).dtype.str, np.asarray(x).tobytes()) for x in jax.tree.leaves(law))


def _group(request: Request) -> tuple:
    """What the requests drawn by one loop share: the distribution's class and structure, the types and dtypes of
    its hyperparameters, their bytes too unless the class draws a row's own (`shares_loops`), and the dtype."""
    hyperparameters = _hyperparameters(request.law)
    if shares_loops(request.law):
        hyperparameters = tuple((kind, dtype) for kind, dtype, _ in hyperparameters)
    return jax.tree.structure(request.law), hyperparameters, request.dtype


def shares_loops(law: Distribution) -> bool:
    """Whether draws of `law`'s class with other hyperparameters are drawn by the same loop, each row with its own
    hyperparameters: where the class gives the same values so (`Distribution.per_row`), under a jaxlib whose XLA
    tests/test_rows.py checked that on (`jinit._src.kernel.CHECKED`; elsewhere a loop per law, as before)."""
    return type(law).per_row and kernel.checked_jaxlib()


def _rows(members: list[Request], w: int) -> np.ndarray:
    """The rows' positioned key data of a group's `members`, ``uint32[rows, 4]``: each draw's key and a row's
    stream position, written in place (each draw's rows one after another, the members' in turn)."""
    out = np.empty((sum(m.data.shape[0] * m.n // w for m in members), 4), np.uint32)
    row = 0
    for member in members:
        draws, per_draw = member.data.shape[0], member.n // w
        starts = np.arange(per_draw, dtype=np.uint64) * np.uint64(w)
        rows = out[row : row + draws * per_draw].reshape(draws, per_draw, 4)
        rows[:, :, :2] = member.data[:, None, :]
        rows[:, :, 2] = (starts >> np.uint64(32)).astype(np.uint32)
        rows[:, :, 3] = starts.astype(np.uint32)  # (the low word: truncated)
        row += draws * per_draw
    return out


@kernel.jit(static_argnames=("widths", "dtypes", "hashed"))
def _fill(
    datas: tuple, laws: tuple, *, widths: tuple[int, ...], dtypes: tuple[np.dtype, ...], hashed: tuple[bool, ...]
) -> list:
    """For each group, its rows: row ``r`` the `width` elements of its law's sample at row ``r``'s position; the
    `hashed` groups' from the words of `_words`, the others' from their `threefry.ROW` keys."""
    words = _words(datas, widths, hashed)
    out = []
    for i, (data, law, w, dtype) in enumerate(zip(datas, laws, widths, dtypes, strict=True)):
        law = engine.opaque(law)
        per_row = jax.tree.map(lambda x: 0 if np.ndim(x) else None, law)  # (hyperparameters given per row)
        if hashed[i]:
            keys = jax.random.wrap_key_data(words[i], impl=threefry.drawn(w))
        else:
            keys = jax.random.wrap_key_data(data, impl=threefry.ROW)

        def row(key: jax.Array, law: Distribution, w: int = w, dtype: np.dtype = dtype) -> jax.Array:
            return law.sample(key, (w,), dtype)

        out.append(jax.vmap(row, in_axes=(0, per_row))(keys, law))
    return out


def _words(datas: tuple, widths: tuple[int, ...], hashed: tuple[bool, ...]) -> dict[int, jax.Array]:
    """The `hashed` groups' words (`threefry.rows_words`), by group: one hash for the rows of all the groups of a
    width, which XLA computes in each group's loop for that group's rows alone (no array of words is made)."""
    by_width: dict[int, list[int]] = {}
    for i, (w, h) in enumerate(zip(widths, hashed, strict=True)):
        if h:
            by_width.setdefault(w, []).append(i)
    out = {}
    for w, members in by_width.items():
        data = datas[members[0]] if len(members) == 1 else jnp.concatenate([datas[i] for i in members])
        words, start = threefry.rows_words(data, w), 0
        for i in members:
            out[i] = jax.lax.slice_in_dim(words, start, start + datas[i].shape[0])
            start += datas[i].shape[0]
    return out


def hashable(dtype: np.dtype) -> bool:
    """Whether a law's draws in `dtype` read 32 bits or fewer per element, once (a real sample computed in at most
    32 bits, `distributions.compute_dtype`): then the rows hash their words ahead (`threefry.drawn`)."""
    dtype = np.dtype(dtype)
    return dtype.kind != "c" and np.dtype(compute_dtype(dtype)).itemsize <= 4


def key_words(keys: Any) -> np.ndarray:
    """Threefry keys (typed, or legacy ``uint32[..., 2]``) as ``uint32[draws, 2]``, row-major."""
    return np.asarray(threefry.key_data(keys)).reshape(-1, 2)
