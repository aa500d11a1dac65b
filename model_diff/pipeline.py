"""One comparison end to end: diff two open checkpoints, analyse the result, render reports.

Every front end (``model-diff compare`` and ``demo``, ``git difftool``, the external diff
driver and the check hooks) goes through ``compare`` so they agree on what the report of a
pair is. The analysis always sees every tensor pair, unchanged ones included (patterns and
frozen-layer detection need them); ``DiffConfig.include_unchanged`` only decides what the
rendered report lists. This module does no I/O of its own.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .analysis import Analysis, AnalysisConfig, DiffAnalyzer
from .checkpoint import Checkpoint
from .diff import ChangeType, DiffConfig, DiffSummary, ModelDiff, ParameterDiff, ProgressCallback

if TYPE_CHECKING:
    from .report import VisualizationConfig


@dataclass(frozen=True)
class Comparison:
    """The outcome of comparing two checkpoints: every pair, the summary and the analysis."""

    diffs: list[ParameterDiff]  # every tensor pair, unchanged included, natural name order
    summary: DiffSummary
    analysis: Analysis
    inputs: dict[str, dict[str, Any]]  # Checkpoint.describe() of each side
    config: DiffConfig

    @property
    def listed(self) -> list[ParameterDiff]:
        """The pairs a report lists: unchanged ones only with ``config.include_unchanged``."""
        if self.config.include_unchanged:
            return self.diffs
        return [d for d in self.diffs if d.change_type is not ChangeType.UNCHANGED]

    def report(
        self,
        fmt: str,
        *,
        old_name: str,
        new_name: str,
        color: bool = False,
        visualization: VisualizationConfig | None = None,
    ) -> str:
        """Render as ``text``, ``json``, ``markdown`` or ``html`` (``create_diff_report``)."""
        from .report import create_diff_report

        text: str = create_diff_report(
            self.listed,
            self.summary,
            self.analysis,
            format=fmt,
            old_name=old_name,
            new_name=new_name,
            config=visualization,
            inputs=self.inputs,
            diff_config=self.config,
            color=color,
        )
        return text


def compare(
    old: Checkpoint,
    new: Checkpoint,
    config: DiffConfig | None = None,
    *,
    old_label: str | None = None,
    new_label: str | None = None,
    progress: ProgressCallback | None = None,
    analysis_config: AnalysisConfig | None = None,
) -> Comparison:
    """Diff and analyse two open checkpoints (the caller opens and closes them).

    ``analysis_config`` is the judge's configuration: a policy's (``hooks.policy``) when one
    is in force, so the report and the gate find the same things.
    """
    config = config or DiffConfig()
    run = dataclasses.replace(config, include_unchanged=True)
    diffs, summary = ModelDiff(run).diff(old, new, progress=progress)
    # With both checkpoints still open, tied-weight candidates are confirmed byte for byte.
    analysis = DiffAnalyzer(analysis_config).run(diffs, summary, old=old, new=new)
    inputs = {"old": old.describe(old_label), "new": new.describe(new_label)}
    return Comparison(diffs, summary, analysis, inputs, config)
