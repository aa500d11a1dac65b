"""From the analyzer's insights to a gate's violations: ``violations`` and ``fails``.

The analyzer (``model_diff.analysis.DiffAnalyzer``) is the only judge: it makes every
finding, with the policy's thresholds, and stamps each with the policy's level
(``Policy.analysis_config``). This module only keeps the insights levelled ``error`` or
``warning`` as ``Violation`` records and orders them; it derives nothing itself. Pure
functions: no file or git I/O, no printing, no exit codes.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from model_diff.findings import Insight, describe_names

#: Worst first among violations of the same level (output order, annotation priority).
CODE_RANK = {
    "nonfinite-values": 0,
    "unchecked-tensors": 0,
    "frozen-layers": 1,
    "low-cosine": 2,
    "large-relative-change": 3,
    "norm-explosion": 4,
    "norm-collapse": 5,
    "architecture-changed": 6,
    "shape-changed": 7,
    "dtype-changed": 8,
}
#: Tensor names shown in one message before "and N more".
SHOWN_TENSORS = 5


@dataclass(frozen=True)
class Violation:
    """One finding a policy levelled error or warning: the insight's code, title and
    description (as ``message``), its tensors and its evidence (as ``numbers``)."""

    code: str
    level: str  # "error" | "warning"
    title: str
    message: str
    tensors: tuple[str, ...] = ()
    numbers: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "level": self.level,
            "title": self.title,
            "message": self.message,
            "tensors": list(self.tensors),
            "numbers": {k: _json_number(v) for k, v in self.numbers.items()},
        }


def _json_number(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, Mapping):
        return {k: _json_number(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_json_number(x) for x in v]
    return v


def name_list(names: Sequence[str], shown: int = SHOWN_TENSORS) -> str:
    """``a, b, c and 4 more``: the first ``shown`` names, then a count."""
    return describe_names(names, shown)


def violations(insights: Iterable[Insight]) -> list[Violation]:
    """The insights levelled ``error`` or ``warning``, as violations, errors first.

    An insight without a level (analysed without a policy) is not a violation: levels are
    the policy's to give (``AnalysisConfig.levels``).
    """
    out = []
    for ins in insights:
        if ins.level not in ("error", "warning"):
            continue
        tensors = ins.tensors
        message = ins.description or ins.title or ins.code
        if tensors and tensors[0] not in message:
            message = f"{message}: {name_list(list(tensors))}"
        out.append(
            Violation(
                code=ins.code,
                level=ins.level,
                title=ins.title or ins.code,
                message=message,
                tensors=tensors,
                numbers=ins.numbers,
            )
        )
    return sort_violations(out)


def sort_violations(vs: Iterable[Violation]) -> list[Violation]:
    """Errors before warnings, worst code first: a stable order for output."""
    return sorted(vs, key=lambda v: (v.level != "error", CODE_RANK.get(v.code, 50), v.code))


def fails(vs: Iterable[Violation], fail_on: str) -> bool:
    """Whether ``vs`` fail a check run with ``--fail-on fail_on``."""
    if fail_on == "never":
        return False
    levels = {"error"} if fail_on == "error" else {"error", "warning"}
    return any(v.level in levels for v in vs)
