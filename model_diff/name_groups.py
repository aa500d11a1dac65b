"""Tensor lists in words, grouped by block and layer type: the one way reports say "which".

A finding about 48 tensors names them as "model.layers.18-23: all attention and MLP tensors
(48)", not as "q_proj.weight and 46 more". ``group_names(names, types)`` places each listed
name in its block (``layers.block_layout`` over every tensor of the pair, so "all" is
measured against the whole model), merges consecutive blocks of one stack whose listed
tensors are alike (the same layer types complete, the same other tensors by their name
inside the block), and names tensors outside blocks one by one. ``block_runs`` spells runs of
consecutive blocks ("encoder.layer.0-2 (3 whole blocks)"), as the frozen-layers insight
says them. Only words: evidence keeps every name. This module reads names only.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from . import layers
from .naming import natural_key, natural_sorted

__all__ = ["TYPE_WORDS", "block_runs", "describe_groups", "group_names", "run_label"]

#: How a layer type reads in a sentence.
TYPE_WORDS = {
    layers.EMBEDDING: "embedding",
    layers.ATTENTION: "attention",
    layers.MLP: "MLP",
    layers.NORM: "norm",
    layers.HEAD: "head",
    layers.OTHER: "other",
}
#: Tensors of a partly listed layer type spelled by their name inside the block, up to this.
_SPELLED = 3


def run_label(first: layers.BlockInfo, last: layers.BlockInfo) -> str:
    """ "model.layers.18-23" for a run of consecutive blocks ("model.layers.5" for one)."""
    if first.label == last.label:
        return first.label
    tail = re.search(r"[\d.]+$", last.label[len(last.stack) :])
    return f"{first.label}-{tail.group(0).lstrip('.') if tail else last.label}"


def _runs(blocks: Sequence[layers.BlockInfo]) -> list[list[layers.BlockInfo]]:
    """Consecutive blocks of one stack, in depth order."""
    out: list[list[layers.BlockInfo]] = []
    for b in sorted(blocks, key=lambda b: b.ordinal):
        last = out[-1][-1] if out else None
        if last is not None and b.ordinal == last.ordinal + 1 and b.stack == last.stack:
            out[-1].append(b)
        else:
            out.append([b])
    return out


def block_runs(blocks: Sequence[layers.BlockInfo]) -> list[str]:
    """'model.layers.0-7 (8 whole blocks)' for consecutive whole blocks."""
    out = []
    for run in _runs(blocks):
        n = len(run)
        what = "whole block" if n == 1 else f"{n} whole blocks"
        out.append(f"{run_label(run[0], run[-1])} ({what})")
    return out


@dataclass(frozen=True)
class _Shape:
    """What a block's listed tensors are: complete layer types, and the others by name."""

    full: tuple[str, ...]
    partial: tuple[str, ...]  # names inside the block ("self_attn.q_proj.weight")
    whole: bool  # every tensor of the block is listed


def _type_words(types: Sequence[str]) -> str:
    words = [TYPE_WORDS.get(t, t) for t in types]
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def _phrase(shape: _Shape, count: int, partial_types: Sequence[str]) -> str:
    if shape.whole:
        return f"all tensors ({count})"
    parts = []
    if shape.full:
        parts.append(f"all {_type_words(shape.full)} tensors")
    if shape.partial:
        if len(shape.partial) <= _SPELLED:
            parts.append(" and ".join(shape.partial))
        else:
            parts.append(f"{len(shape.partial)} {_type_words(partial_types)} tensors")
    return " and ".join(parts) + f" ({count})"


def group_names(
    names: Sequence[str], types: Mapping[str, str], spell: Callable[[str], str] = str
) -> list[str]:
    """``names`` as phrases, blocks first in depth order, then the names outside blocks.

    ``types`` maps every tensor of the pair (listed or not) to its layer type: a layer type
    is "all" in a block when every tensor of that type in the block is listed. A tensor named
    on its own reads as ``spell(name)``.
    """
    universe = list(dict.fromkeys([*types, *names]))
    layout = layers.block_layout(universe)

    def block_of(name: str) -> layers.BlockInfo | None:
        pos = layers.block_position(name)
        return layout.get(pos.label) if pos is not None else None

    members: dict[str, dict[str, list[str]]] = {}  # block -> type -> names (the model's)
    for n in universe:
        b = block_of(n)
        if b is not None:
            members.setdefault(b.label, {}).setdefault(types.get(n, layers.OTHER), []).append(n)
    listed: dict[str, list[str]] = {}
    outside: list[str] = []
    infos: dict[str, layers.BlockInfo] = {}
    for n in dict.fromkeys(names):
        b = block_of(n)
        if b is None:
            outside.append(n)
        else:
            listed.setdefault(b.label, []).append(n)
            infos[b.label] = b
    shapes: dict[str, _Shape] = {}
    partial_types: dict[str, list[str]] = {}
    for label, got in listed.items():
        got_set = set(got)
        full, partial, ptypes = [], [], []
        for t in [*layers.LAYER_TYPES, *sorted(set(members[label]) - set(layers.LAYER_TYPES))]:
            of_type = members[label].get(t, [])
            hit = [n for n in of_type if n in got_set]
            if not hit:
                continue
            if len(hit) == len(of_type):
                full.append(t)
            else:
                partial += [n[len(label) + 1 :] for n in hit]
                ptypes.append(t)
        whole = not partial and len(full) == len(members[label])
        shapes[label] = _Shape(tuple(full), tuple(natural_sorted(partial)), whole)
        partial_types[label] = ptypes
    out: list[str] = []
    for run in _runs(list(infos.values())):
        i = 0
        while i < len(run):  # split the run where the listed tensors differ
            j = i
            while j + 1 < len(run) and shapes[run[j + 1].label] == shapes[run[i].label]:
                j += 1
            part = run[i : j + 1]
            count = sum(len(listed[b.label]) for b in part)
            shape = shapes[part[0].label]
            if len(part) == 1 and not shape.full and not shape.whole and count <= _SPELLED:
                out += map(spell, listed[part[0].label])  # a few tensors: their full names
                i = j + 1
                continue
            out.append(
                f"{run_label(part[0], part[-1])}: "
                f"{_phrase(shape, count, partial_types[part[0].label])}"
            )
            i = j + 1
    return out + [spell(n) for n in sorted(outside, key=natural_key)]


def describe_groups(
    names: Sequence[str],
    types: Mapping[str, str],
    spell: Callable[[str], str] = str,
    shown: int = 8,
) -> str:
    """``group_names`` joined with "; ", the first ``shown`` phrases and then a count."""
    phrases = group_names(names, types, spell)
    more = len(phrases) - shown
    listed = "; ".join(phrases[:shown])
    return f"{listed}; and {more} more" if more > 0 else listed
