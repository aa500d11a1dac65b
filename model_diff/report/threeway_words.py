"""The three-way report's shared wording: what each kind of change and interference is
called, the merge verdict and the readiness lines (``threeway`` and ``threeway_html`` both
say them, so they say them alike). Strings only.
"""

from __future__ import annotations

from ..threeway import ThreeWay, ThreeWayTensor
from .formatting import fmt_cos, fmt_pct

__all__ = [
    "INTERFERENCE_TEXT",
    "KIND_TITLES",
    "both_changed",
    "one_side",
    "plural",
    "readiness_lines",
    "side_change",
    "verdict",
]

KIND_TITLES = {
    "unchanged": "unchanged",
    "ours": "ours only",
    "theirs": "theirs only",
    "both": "same change on both",
    "conflict": "conflict",
}
INTERFERENCE_TEXT = {
    "none": "no content conflict to measure",
    "aligned": "aligned: the two updates point the same way",
    "independent": "independent: the two updates are close to orthogonal",
    "opposing": "opposing: the two updates pull against each other",
}


def plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def verdict(result: ThreeWay) -> str:
    """One sentence: what ``model-diff merge`` will do with these three checkpoints."""
    r = result.readiness
    if not r.conflicts:
        return f"merges cleanly: all {plural(r.total, 'tensor')} merge exactly, no strategy needed"
    parts = [f"{plural(r.conflicts, 'conflict')}: `--strategy fail` (the default) writes nothing"]
    if r.arithmetic == r.conflicts:
        parts.append("average, task-arithmetic or ties can merge every one")
    elif r.arithmetic:
        parts.append(
            f"arithmetic can merge {r.arithmetic}; the rest need --strategy ours or theirs"
        )
    else:
        parts.append("only --strategy ours or theirs resolves them")
    return "; ".join(parts)


def readiness_lines(result: ThreeWay) -> list[str]:
    r = result.readiness
    c = result.counts
    lines = [
        f"{plural(r.total, 'tensor')}: {r.exact} merge exactly ({c['unchanged']} unchanged, "
        f"{c['ours']} changed by ours only, {c['theirs']} by theirs only, "
        f"{c['both']} the same on both)",
        f"{plural(r.conflicts, 'conflict')}: {r.content_conflicts} content "
        f"({r.arithmetic} mergeable by arithmetic), {r.structural_conflicts} structural "
        "(shape, dtype, delete/modify, add/add)",
    ]
    if r.content_conflicts:
        lines.append(
            f"conflicting updates: cosine(Δours, Δtheirs) {fmt_cos(r.cosine)}, sign "
            f"disagreement {fmt_pct(r.sign_disagreement)}, {r.opposing} of "
            f"{r.content_conflicts} with a negative cosine: {INTERFERENCE_TEXT[r.interference]}"
        )
    lines.append(verdict(result))
    return lines


def side_change(t: ThreeWayTensor) -> str:
    ch = t.change
    if ch.kind == "ours":
        return f"ours {ch.ours_change}"
    if ch.kind == "theirs":
        return f"theirs {ch.theirs_change}"
    if ch.kind == "both":
        return f"both {ch.ours_change}"
    return f"conflict ({ch.conflict})"


def both_changed(result: ThreeWay) -> list[ThreeWayTensor]:
    return [t for t in result.tensors if t.change.kind in ("both", "conflict")]


def one_side(result: ThreeWay) -> list[ThreeWayTensor]:
    return [t for t in result.tensors if t.change.kind in ("ours", "theirs")]
