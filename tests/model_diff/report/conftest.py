"""Fixtures of the report tests: one diffed toy pair, shared per module (diffing is the cost)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from model_diff.checkpoint import Checkpoint
from model_diff.diff import DiffConfig, DiffSummary, ParameterDiff
from model_diff.report import inputs_from_checkpoints

from .pairs import analyse, diff_pair, golden_checkpoints


@dataclass
class Diffed:
    old: Checkpoint
    new: Checkpoint
    diffs: list[ParameterDiff]
    summary: DiffSummary
    diff_config: DiffConfig
    analysis: dict[str, Any]

    def kwargs(self, **kw: Any) -> dict[str, Any]:
        """Keyword arguments of create_diff_report for this pair."""
        base = dict(
            old_name="base",
            new_name="finetuned",
            inputs=inputs_from_checkpoints(self.old, self.new),
            diff_config=self.diff_config,
        )
        base.update(kw)
        return base


@pytest.fixture(scope="module")
def pair() -> Diffed:
    old, new = golden_checkpoints()
    diffs, summary, cfg = diff_pair(old, new)
    return Diffed(old, new, diffs, summary, cfg, analyse(diffs, summary, old, new))
