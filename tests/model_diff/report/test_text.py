"""The terminal report: grouping, 80 columns, colour only when asked, safe names."""

from __future__ import annotations

import re

import numpy as np

from model_diff.checkpoint import from_arrays
from model_diff.report import VisualizationConfig, create_diff_report

from .conftest import Diffed
from .pairs import diff_pair

ANSI = re.compile(r"\x1b\[[0-9;]*m")


def test_sections_in_order_insights_before_tensor_groups(pair: Diffed) -> None:
    out = create_diff_report(
        pair.diffs, pair.summary, pair.analysis, format="text", **pair.kwargs()
    )
    heads = [
        "Summary",
        f"Insights ({len(pair.analysis['insights'])})",
        "Layer types",
        "Change by depth",
        "Added (1)",
        "Removed (1)",
        "Shape changed (1)",
        "Dtype changed (1)",
        "Modified (",
        "Unchanged (2)",
    ]
    positions = [out.index("\n" + h) for h in heads]
    assert positions == sorted(positions)
    # Critical first, then warning, then info.
    assert out.index("[CRITICAL]") < out.index("[WARNING]") < out.index("[INFO]")
    assert "model.layers.2.mlp.up_proj.weight" in out.split("Modified (")[1]
    assert "! = the new tensor holds NaN or Inf values" in out


def test_every_line_fits_80_columns_even_with_long_names(tmp_path: object) -> None:
    long = "model." + ".".join(f"very_long_segment_{i}" for i in range(8)) + ".weight"
    a = {long: np.ones(4, np.float32), "x.weight": np.ones(4, np.float32)}
    b = {long: np.full(4, 2.0, np.float32), "y" * 120: np.ones((3, 2), np.float32)}
    diffs, summary, _ = diff_pair(from_arrays(a), from_arrays(b))
    out = create_diff_report(diffs, summary, None, format="text", old_name="o" * 200, new_name="n")
    assert max(len(line) for line in out.splitlines()) <= 80
    assert "y" * 78 in out  # long names wrap instead of being cut
    assert "not computed (no analysis given)" in out


def test_no_ansi_unless_color_is_set(pair: Diffed) -> None:
    plain = create_diff_report(
        pair.diffs, pair.summary, pair.analysis, format="text", **pair.kwargs()
    )
    coloured = create_diff_report(
        pair.diffs,
        pair.summary,
        pair.analysis,
        format="text",
        **pair.kwargs(config=VisualizationConfig(color=True)),
    )
    assert "\x1b" not in plain
    assert "\x1b[1;31m[CRITICAL]\x1b[0m" in coloured
    assert ANSI.sub("", coloured) == plain


def test_control_characters_in_names_are_shown_escaped() -> None:
    """A tensor name cannot send escape sequences or newlines to the terminal."""
    evil = "a\x1b[2Jb\nc"
    diffs, summary, _ = diff_pair(from_arrays({}), from_arrays({evil: np.ones(2, np.float32)}))
    out = create_diff_report(diffs, summary, None, format="text")
    assert "\x1b" not in out
    assert "a\\x1b[2Jb\\nc" in out


def test_max_layers_display_keeps_the_most_changed(pair: Diffed) -> None:
    out = create_diff_report(
        pair.diffs,
        pair.summary,
        pair.analysis,
        format="text",
        **pair.kwargs(config=VisualizationConfig(max_layers_display=6)),
    )
    # 4 structural changes + the NaN tensor + the largest relative change.
    modified = pair.summary.modified_parameters
    assert f"Modified ({modified}, showing 2)" in out
    assert (
        f"Showing the 6 most changed of {modified + 4} changed tensors (max_layers_display=6)"
    ) in out
    top = max(
        (d for d in pair.diffs if d.change_type.value == "modified"),
        key=lambda d: d.relative_change or 0.0,
    )
    section = out.split("Modified (")[1].split("Unchanged (")[0]
    listed = [line.split()[0].lstrip("!") for line in section.splitlines()[2:] if line.strip()]
    assert listed == ["model.layers.2.mlp.up_proj.weight", top.name]


def test_color_keyword_overrides_the_config(pair: Diffed) -> None:
    """create_diff_report(color=...) is how the CLI passes isatty()."""
    on = create_diff_report(pair.diffs, pair.summary, None, format="text", color=True)
    off = create_diff_report(
        pair.diffs,
        pair.summary,
        None,
        format="text",
        color=False,
        config=VisualizationConfig(color=True),
    )
    assert "\x1b[" in on and "\x1b" not in off


def test_partial_analysis_dicts_render_in_every_format(pair: Diffed) -> None:
    """Optional analysis keys may be missing; odd values are ignored, not fatal."""
    partial = {
        "insights": [{"code": "x", "severity": "bogus", "title": "Only insights"}],
        "layer_analysis": {"mlp": {"count": "many"}},
        "depth_profile": [{"block": "a"}],
    }
    for fmt in ("text", "json", "markdown", "html"):
        out = create_diff_report(pair.diffs, pair.summary, partial, format=fmt)
        assert "Only insights" in out


def test_depth_profile_shows_later_blocks_moving_more(pair: Diffed) -> None:
    """The toy fine-tune moves later blocks more: the depth bars grow with the block index."""
    out = create_diff_report(pair.diffs, pair.summary, pair.analysis, format="text")
    section = out.split("Change by depth (avg relative change per block)\n")[1].split("\n\n")[0]
    bars = [line.count("#") for line in section.splitlines()]
    assert len(bars) == 3 and bars == sorted(bars) and bars[-1] == 40


def test_block_profile_merges_runs_of_blocks_beyond_max_rows() -> None:
    from model_diff.analysis import DepthEntry
    from model_diff.report.view import block_profile

    profile = [
        DepthEntry(b, f"layers.{b}", None, t, 1, 0, float(b), None, 1)
        for b in range(10)
        for t in ("attention", "mlp")
    ]
    assert block_profile(profile, max_rows=24)[3] == ("3", 3.0)
    merged = block_profile(profile, max_rows=4)
    assert [label for label, _ in merged] == ["0-2", "3-5", "6-8", "9"]
    assert merged[0][1] == 1.0
