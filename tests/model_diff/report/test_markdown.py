"""The Markdown report: GFM tables that names cannot break, bounded in size."""

from __future__ import annotations

import re

import numpy as np

from model_diff.checkpoint import from_arrays
from model_diff.report import VisualizationConfig, create_diff_report
from model_diff.report.markdown import md_code, md_text

from .conftest import Diffed
from .pairs import XSS_NAME, diff_pair

UNESCAPED_PIPE = re.compile(r"(?<!\\)\|")


def _table_rows(md: str) -> list[str]:
    return [line for line in md.splitlines() if line.startswith("| ")]


def test_sections_grouped_with_insights_first(pair: Diffed) -> None:
    md = create_diff_report(
        pair.diffs, pair.summary, pair.analysis, format="markdown", **pair.kwargs()
    )
    heads = [
        "### Insights",
        "### Layer types",
        "#### Added (1)",
        "#### Removed (1)",
        "#### Shape changed (1)",
        "#### Dtype changed (1)",
        "#### Modified (",
        "**Unchanged: 2**",
    ]
    positions = [md.index(h) for h in heads]
    assert positions == sorted(positions)
    assert md.index("**CRITICAL**") < md.index("**WARNING**") < md.index("**info**")
    assert "pattern `inverse_gradient`" in md
    assert ":x: NaN/Inf in 1 of 31 tensors of the new checkpoint" in md


def test_names_with_pipes_backticks_and_html_stay_in_one_code_span() -> None:
    names = ["a|b", "x`y``z", XSS_NAME, "@octocat/*bold*_[link](http://e.com)"]
    diffs, summary, _ = diff_pair(
        from_arrays({}), from_arrays({n: np.ones(2, np.float32) for n in names})
    )
    md = create_diff_report(diffs, summary, None, format="markdown")
    rows = [r for r in _table_rows(md) if r.startswith("| `")]
    assert len(rows) == 4
    for row in rows:
        assert len(UNESCAPED_PIPE.findall(row)) == 7, row  # 6 columns
    assert "`a\\|b`" in md
    assert "```x`y``z```" in md
    assert f"`{XSS_NAME}`" in md
    assert "<script>" not in md.replace(f"`{XSS_NAME}`", "")


def test_free_text_is_escaped(pair: Diffed) -> None:
    assert md_text("a|b *c* <b>d</b> `e` [f](g) @h") == (
        "a\\|b \\*c\\* \\<b\\>d\\</b\\> \\`e\\` \\[f\\](g) \\@h"
    )
    assert md_code("`edge`") == "`` `edge` ``"
    hostile = {
        "code": "x",
        "severity": "info",
        "category": "c",
        "title": "t",
        "description": "bit-identical | *not* trained <b>at all</b>.",
        "evidence": {},
    }
    analysis = {**pair.analysis, "insights": [*pair.analysis["insights"], hostile]}
    md = create_diff_report(pair.diffs, pair.summary, analysis, format="markdown")
    assert "bit-identical \\| \\*not\\* trained \\<b\\>at all\\</b\\>." in md


def test_size_is_bounded_by_max_chars_with_a_note() -> None:
    arrays = {f"model.layers.{i}.mlp.weight": np.full(8, 1.0, np.float32) for i in range(120)}
    moved = {k: v * (1 + i / 1000) for i, (k, v) in enumerate(arrays.items())}
    diffs, summary, _ = diff_pair(from_arrays(arrays), from_arrays(moved))
    cfg = VisualizationConfig(max_layers_display=1000, max_chars=4000)
    md = create_diff_report(diffs, summary, None, format="markdown", config=cfg)
    assert len(md) <= 4000
    assert "cut after" in md and "under 4,000 characters" in md
    assert md.count("<details>") == md.count("</details>") == 1  # still well-formed when cut
    full = create_diff_report(
        diffs, summary, None, format="markdown", config=VisualizationConfig(max_layers_display=1000)
    )
    assert len(_table_rows(full)) > len(_table_rows(md))
    assert "cut after" not in full
