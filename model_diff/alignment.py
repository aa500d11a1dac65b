"""Which tensor of the old checkpoint is which tensor of the new one.

Two checkpoints of one model do not always spell its tensors alike: a DDP ``module.`` or a
Lightning ``model.`` prefix on one side, spaces in one release and underscores in the next,
a tensor moved under a new name, a tied weight saved twice by torch but once by HF's
safetensors writer. Compared name by name, each of these reads as tensors added and removed
("architecture changed"). Before any data is compared, names are paired in three steps, each
applied only to the names still unpaired:

1. **Wrapper prefixes** (``strip_wrappers``): a ``module.`` / ``_orig_mod.`` prefix that every
   name of one side carries and the other side's names lack is dropped.
2. **Name rules** (``find_rules``): a consistent rewrite (a separator replaced, a prefix
   dropped or added, or both) that maps several unpaired old names onto unpaired new names
   is applied to every name it pairs, and stated once (``NameRule.describe``). A tensor
   paired by a rule is compared under it as any other: modified, unchanged, ...
3. **Renames by content** (``find_renames``): of the names still unpaired, an old and a new
   tensor with the same dtype and shape and identical bytes (xxh3-128 of the data; hashed
   only for such candidates) are one tensor renamed, when the match is unique and the
   tensor is not constant (a tensor of zeros matches every other of its shape).

After the metric pass, a tensor still present on one side only that is a **tied
duplicate** of a tensor both sides keep (``find_ties``: the reader saw both names view the
same stored bytes, or its statistics and then its bytes equal that tensor's) is a tie
dropped or added, not an architecture change.

Every step walks names in natural order and breaks ties by name, so results do not depend
on the order the files store their tensors. This module must not import torch, click or the
git/hook packages.
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from .checkpoint import Checkpoint, NameRule, TensorRef
from .chunked import ChunkedArray
from .hashing import tensor_xxh3
from .naming import natural_sorted

__all__ = [
    "SEPARATORS",
    "WRAPPER_PREFIXES",
    "Pairing",
    "Tie",
    "find_renames",
    "find_rules",
    "find_ties",
    "is_constant",
    "pair_checkpoints",
    "strip_wrappers",
]

#: Prefixes that wrap a whole model: DDP/DataParallel, torch.compile.
WRAPPER_PREFIXES = ("module.", "_orig_mod.")
#: Characters a name rule may replace one by another (never letters or digits: ``layers.1``
#: -> ``layers.2`` is a different tensor, not a spelling).
SEPARATORS = (" ", "_", "-", ".", "/", ":")
#: A rule must pair at least this many tensors (or every unpaired tensor of both sides).
MIN_RULE_PAIRS = 2
#: At most this many rules are searched for, one after the other, on what is left unpaired.
MAX_RULES = 4
#: Candidate rules are drawn from this many unpaired old names (spread over the natural
#: order), and the best ``RULE_CANDIDATES`` of them are tried on every unpaired name.
RULE_SAMPLE = 64
RULE_CANDIDATES = 8
#: Elements per slice when testing a tensor for constant bytes.
_CONSTANT_CHUNK = 1 << 20


@dataclass(frozen=True)
class Pairing:
    """The two checkpoints as compared (old names mapped onto the new side's) and how."""

    old: Checkpoint
    new: Checkpoint
    #: rules applied, in the order found (wrapper prefixes first)
    rules: tuple[NameRule, ...] = ()
    #: compared name -> the old file's own name, for tensors paired by a rule or as a rename
    #: (a wrapper prefix alone is stated by its rule, not per tensor)
    old_names: dict[str, str] = field(default_factory=dict)
    #: compared names paired by identical bytes (no rule explains them)
    renamed: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Tie:
    """A tensor present on one side only that duplicates ``kept`` on that side."""

    name: str
    kept: str
    #: "storage" (the file stores both names as one tensor) or "bytes" (equal contents)
    evidence: str


# -- step 1: wrapper prefixes ----------------------------------------------------------------
def _strip(prefix: str, name: str) -> str:
    return name[len(prefix) :]


def strip_wrappers(
    old: Checkpoint, new: Checkpoint
) -> tuple[Checkpoint, Checkpoint, list[NameRule]]:
    """Drop a wrapper prefix (DDP ``module.``, torch.compile ``_orig_mod.``) that every name
    of one side carries and not every name of the other side does."""
    rules: list[NameRule] = []
    for prefix in WRAPPER_PREFIXES:
        old_has = bool(old.tensors) and all(n.startswith(prefix) for n in old.tensors)
        new_has = bool(new.tensors) and all(n.startswith(prefix) for n in new.tensors)
        strip = functools.partial(_strip, prefix)
        if old_has and not new_has:
            old = old.renamed(strip)
            rules.append(NameRule("old", len(old.tensors), drop=prefix))
        elif new_has and not old_has:
            new = new.renamed(strip)
            rules.append(NameRule("new", len(new.tensors), drop=prefix))
    return old, new, rules


# -- step 2: name rules ------------------------------------------------------------------------
_Key = tuple[str, str, str, str]  # (find, replace, drop, add)


def _boundaries(name: str) -> Iterable[int]:
    """Positions just after each ``.`` inside ``name`` (where a prefix may end)."""
    start = 0
    while (i := name.find(".", start, len(name) - 1)) >= 0:
        yield i + 1
        start = i + 1


def _candidates(name: str, targets: set[str], by_suffix: Mapping[str, Sequence[str]]) -> set[_Key]:
    """Every rule that maps ``name`` onto one of ``targets``."""
    variants = [("", "", name)]
    for x in sorted(set(name) & set(SEPARATORS)):
        variants += [(x, y, name.replace(x, y)) for y in SEPARATORS if y != x]
    out: set[_Key] = set()
    for find, replace, t in variants:
        if find and t in targets:
            out.add((find, replace, "", ""))
        for k in _boundaries(t):
            if t[k:] in targets:
                out.add((find, replace, t[:k], ""))
        for prefix in by_suffix.get(t, ()):
            out.add((find, replace, "", prefix))
    return out


def _complexity(key: _Key) -> int:
    find, _, drop, add = key
    return (1 if find else 0) + (1 if drop else 0) + (1 if add else 0)


def _pairs(rule: NameRule, left_old: Sequence[str], left_new: set[str]) -> dict[str, str]:
    """Old name -> new name for every unpaired old name ``rule`` maps onto an unpaired new
    one; in natural order, so a target two names map onto goes to the first."""
    pairs: dict[str, str] = {}
    taken: set[str] = set()
    for n in left_old:
        t = rule.apply(n)
        if t is not None and t in left_new and t not in taken:
            pairs[n] = t
            taken.add(t)
    return pairs


def find_rules(
    old_names: Iterable[str], new_names: Iterable[str]
) -> list[tuple[NameRule, dict[str, str]]]:
    """Rules mapping unpaired old names onto unpaired new names, each with the pairs it made
    (old name -> new name). Candidates come from up to ``RULE_SAMPLE`` unpaired old names
    spread over their natural order; the most supported ones are then applied to every
    unpaired name, and the rule pairing the most is taken (then the simpler, then by its
    spelling). The search repeats on what is left, so a rule for a minority is found in a
    later round."""
    old_set, new_set = set(old_names), set(new_names)
    left_old = natural_sorted(old_set - new_set)
    left_new = new_set - old_set
    found: list[tuple[NameRule, dict[str, str]]] = []
    for _ in range(MAX_RULES):
        if not left_old or not left_new:
            break
        by_suffix: dict[str, list[str]] = {}
        for n in left_new:
            for k in _boundaries(n):
                by_suffix.setdefault(n[k:], []).append(n[:k])
        sample = left_old[:: -(-len(left_old) // RULE_SAMPLE)]
        support: Counter[_Key] = Counter()
        for n in sample:
            support.update(_candidates(n, left_new, by_suffix))
        ranked = sorted(support, key=lambda k: (-support[k], _complexity(k), k))
        best: tuple[tuple[int, int, _Key], NameRule, dict[str, str]] | None = None
        for key in ranked[:RULE_CANDIDATES]:
            find, replace, drop, add = key
            pairs = _pairs(NameRule("old", 0, drop, add, find, replace), left_old, left_new)
            rank = (-len(pairs), _complexity(key), key)
            if best is None or rank < best[0]:
                best = (rank, NameRule("old", len(pairs), drop, add, find, replace), pairs)
        if best is None:
            break
        _, rule, pairs = best
        everything = len(pairs) == len(left_old) == len(left_new)
        if len(pairs) < MIN_RULE_PAIRS and not everything:
            break
        found.append((rule, pairs))
        left_old = [n for n in left_old if n not in pairs]
        left_new -= set(pairs.values())
    return found


# -- step 3: renames by content -----------------------------------------------------------------
def is_constant(ref: TensorRef) -> bool:
    """True when every element of the tensor has the same bytes (zeros, ones, one value).
    Reads in growing slices (a tensor of varied values stops at the first). A
    block-quantized tensor (no per-element bytes) counts as not constant."""
    arr = ref.array()
    try:
        if isinstance(arr, ChunkedArray):
            return False
        n = arr.size
        if n <= 1:
            return True
        size = arr.dtype.itemsize
        items = arr.view(f"u{size}") if size in (1, 2, 4, 8) else arr.view(np.uint8)
        step = size if items.dtype == np.uint8 else 1  # bytes per element in ``items``
        first = items[:step]
        start, chunk = 0, 4096
        while start < n:
            stop = min(n, start + chunk)
            part = items[start * step : stop * step]
            if not np.array_equal(
                part.reshape(-1, step), np.broadcast_to(first, (stop - start, step))
            ):
                return False
            start, chunk = stop, min(chunk * 4, _CONSTANT_CHUNK)
        return True
    finally:
        ref.release()


def _layout(ref: TensorRef) -> tuple[str, tuple[int, ...]]:
    return ref.dtype.name, ref.shape


def find_renames(old: Mapping[str, TensorRef], new: Mapping[str, TensorRef]) -> dict[str, str]:
    """Old name -> new name for unpaired tensors with identical bytes (``old`` and ``new``
    hold only the unpaired tensors). Only tensors whose dtype and shape have a counterpart
    are hashed; a match must be unique on both sides and not a constant tensor."""
    by_layout: dict[tuple[str, tuple[int, ...]], tuple[list[str], list[str]]] = {}
    for n in natural_sorted(old):
        by_layout.setdefault(_layout(old[n]), ([], []))[0].append(n)
    for n in natural_sorted(new):
        if _layout(new[n]) in by_layout:
            by_layout[_layout(new[n])][1].append(n)
    pairs: dict[str, str] = {}
    for olds, news in by_layout.values():
        if not news:
            continue
        old_hash = {n: tensor_xxh3(old[n]) for n in olds}
        new_hash = {n: tensor_xxh3(new[n]) for n in news}
        old_count = Counter(old_hash.values())
        new_count = Counter(new_hash.values())
        by_hash = {h: n for n, h in new_hash.items()}
        for n, h in old_hash.items():
            if old_count[h] == 1 and new_count.get(h) == 1 and not is_constant(old[n]):
                pairs[n] = by_hash[h]
    return {n: pairs[n] for n in natural_sorted(pairs)}


def pair_checkpoints(old: Checkpoint, new: Checkpoint) -> Pairing:
    """Steps 1-3: the checkpoints with old names mapped onto new ones, and what was done."""
    old, new, rules = strip_wrappers(old, new)
    wrapper = "".join(r.drop for r in rules if r.side == "old")  # outermost first
    mapping: dict[str, str] = {}
    for rule, pairs in find_rules(old.tensors, new.tensors):
        rules.append(rule)
        mapping.update(pairs)
    taken = set(mapping.values())
    left_old = {n: r for n, r in old.tensors.items() if n not in mapping and n not in new.tensors}
    left_new = {n: r for n, r in new.tensors.items() if n not in old.tensors and n not in taken}
    renames = find_renames(left_old, left_new) if left_old and left_new else {}
    mapping.update(renames)
    if mapping:
        old = old.renamed(lambda n: mapping.get(n, n))
    return Pairing(
        old=old,
        new=new,
        rules=tuple(rules),
        old_names={t: wrapper + n for n, t in mapping.items()},
        renamed=frozenset(renames.values()),
    )


# -- after the pass: tied duplicates ---------------------------------------------------------------
def find_ties(
    ckpt: Checkpoint,
    lone: Sequence[str],
    kept: Sequence[str],
    stats: Mapping[str, Hashable | None],
) -> list[Tie]:
    """Tensors of ``ckpt`` named in ``lone`` (present on this side only) that duplicate one
    of ``kept`` (present on both sides): stored as the same tensor (the reader's
    ``storage_key``), else with equal statistics (``stats``: the pass's per-side statistics,
    None where not computed) and then equal bytes, and not constant."""
    by_storage: dict[Hashable, str] = {}
    by_layout: dict[tuple[str, tuple[int, ...]], list[str]] = {}
    for n in natural_sorted(kept):
        ref = ckpt.tensors[n]
        if ref.storage_key is not None:
            by_storage.setdefault(ref.storage_key, n)
        by_layout.setdefault(_layout(ref), []).append(n)
    hashes: dict[str, str] = {}

    def digest(name: str) -> str:
        if name not in hashes:
            hashes[name] = tensor_xxh3(ckpt.tensors[name])
        return hashes[name]

    ties: list[Tie] = []
    for n in natural_sorted(lone):
        ref = ckpt.tensors[n]
        twin = by_storage.get(ref.storage_key) if ref.storage_key is not None else None
        if twin is not None:
            ties.append(Tie(n, twin, "storage"))
            continue
        same = [
            k
            for k in by_layout.get(_layout(ref), ())
            if stats.get(n) is None or stats.get(k) is None or stats[k] == stats[n]
        ]
        match = next((k for k in same if digest(k) == digest(n)), None)
        if match is not None and ref.numel > 1 and not is_constant(ref):
            ties.append(Tie(n, match, "bytes"))
    return ties
