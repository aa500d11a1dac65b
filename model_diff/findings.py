"""What the analyzer finds: the ``Insight`` record, its severities and its gate levels.

An insight is one finding about a checkpoint pair (or one checkpoint): a stable ``code``
(policies and CI match it), a ``severity`` the analyzer assigns (critical | warning | info),
a ``category``, a ``title``, a ``description`` and its ``evidence`` (tensor names under
``"tensors"``, and the numbers that decided it). When a policy is in force its ``level``
(error | warning | ignore) is what a gate does with it; without one ``level`` is None.

This module holds data only: it imports nothing of model-diff, so every producer
(``analysis``, ``insights``, ``quantization``) and every consumer (reports, hooks) can use it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "LEVELS",
    "SEVERITIES",
    "Insight",
    "default_level",
    "describe_names",
    "sort_insights",
]

#: Severities, worst first (the order reports list insights in).
SEVERITIES: tuple[str, ...] = ("critical", "warning", "info")
#: Gate levels a policy assigns to a code, worst first.
LEVELS: tuple[str, ...] = ("error", "warning", "ignore")
#: The level of a code no policy names: from the insight's own severity.
_LEVEL_OF_SEVERITY = {"critical": "error", "warning": "warning", "info": "ignore"}


def default_level(severity: str) -> str:
    """critical -> error, warning -> warning, info -> ignore."""
    return _LEVEL_OF_SEVERITY.get(severity, "warning")


@dataclass(frozen=True)
class Insight:
    """One finding. ``evidence["tensors"]`` names the tensors it is about (maybe none)."""

    code: str
    severity: str
    category: str
    title: str
    description: str
    evidence: Mapping[str, Any] = field(default_factory=dict)
    #: error | warning | ignore under the policy in force; None when none is.
    level: str | None = None

    @property
    def tensors(self) -> tuple[str, ...]:
        names = self.evidence.get("tensors") or ()
        if isinstance(names, str):
            return (names,)
        return tuple(str(n) for n in names) if isinstance(names, Sequence) else ()

    @property
    def numbers(self) -> dict[str, Any]:
        """The evidence without the tensor list."""
        return {k: v for k, v in self.evidence.items() if k != "tensors"}

    def to_dict(self) -> dict[str, Any]:
        """The original API's insight dict (``level`` only when a policy set it)."""
        out: dict[str, Any] = {
            "code": self.code,
            "severity": self.severity,
            "category": self.category,
            "title": self.title,
            "description": self.description,
            "evidence": dict(self.evidence),
        }
        if self.level is not None:
            out["level"] = self.level
        return out

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Insight:
        """An insight from a dict (``to_dict()``'s, or a caller's own): missing keys are
        empty, an unknown severity reads as info, an unknown level as none."""
        evidence = raw.get("evidence")
        if not isinstance(evidence, Mapping):
            evidence = {} if evidence is None else {"value": evidence}
        severity = str(raw.get("severity", "info")).lower()
        level = raw.get("level")
        return cls(
            code=str(raw.get("code", "")),
            severity=severity if severity in SEVERITIES else "info",
            category=str(raw.get("category", "")),
            title=str(raw.get("title", "")),
            description=str(raw.get("description", "")),
            evidence=dict(evidence),
            level=level if level in LEVELS else None,
        )


def sort_insights(insights: Sequence[Insight]) -> list[Insight]:
    """Critical first, then warning, then info; within a severity by code, then title."""
    order = {s: i for i, s in enumerate(SEVERITIES)}
    return sorted(insights, key=lambda i: (order.get(i.severity, len(order)), i.code, i.title))


#: Names spelled out in a description; the evidence always lists them all.
DESCRIBE_MAX = 8


def describe_names(names: Sequence[str], shown: int = DESCRIBE_MAX) -> str:
    """``a, b, c and 4 more``: the first ``shown`` names, then a count."""
    listed = ", ".join(names[:shown])
    more = len(names) - shown
    return f"{listed} and {more} more" if more > 0 else listed
