"""Tensor lists in words, grouped by block and layer type (model_diff.name_groups), and the
insights that use them (issue 16, item 3)."""

from __future__ import annotations

import re

from model_diff import toy
from model_diff.layers import classify_layer
from model_diff.name_groups import describe_groups, group_names
from model_diff.report import create_diff_report
from tests.model_diff.report.pairs import analyse, deep_checkpoints, diff_pair

NAMES = list(toy.toy_transformer(n_blocks=24, d_model=8, vocab=16, seed=0))
TYPES = {n: classify_layer(n) for n in NAMES}
UPPER = [n for n in NAMES if re.match(r"model\.layers\.(1[89]|2[0-3])\.", n)]


def test_whole_blocks_merge_into_one_run() -> None:
    """Every tensor of blocks 18-23: one phrase with the run and the count."""
    assert group_names(UPPER, TYPES) == ["model.layers.18-23: all tensors (54)"]


def test_complete_layer_types_are_named() -> None:
    """Attention and MLP tensors of six blocks, norms not: "all attention and MLP"."""
    names = [n for n in UPPER if TYPES[n] != "norm"]
    assert group_names(names, TYPES) == ["model.layers.18-23: all attention and MLP tensors (42)"]


def test_same_tensor_in_every_block_and_runs_split_where_blocks_differ() -> None:
    """q_proj of every block, plus the MLP of block 5: the run splits around block 5; one
    block with a few tensors reads as their full names; names outside blocks follow."""
    names = [n for n in NAMES if "q_proj" in n or n.startswith("model.layers.5.mlp")]
    names += ["lm_head.weight", "model.layers.7.self_attn.k_proj.weight"]
    assert group_names(names, TYPES) == [
        "model.layers.0-4: self_attn.q_proj.weight (5)",
        "model.layers.5: all MLP tensors and self_attn.q_proj.weight (4)",
        "model.layers.6.self_attn.q_proj.weight",
        "model.layers.7.self_attn.q_proj.weight",
        "model.layers.7.self_attn.k_proj.weight",
        "model.layers.8-23: self_attn.q_proj.weight (16)",
        "lm_head.weight",
    ]


def test_describe_groups_counts_what_it_leaves_out() -> None:
    """Every other block: 12 runs, 8 shown and "and 4 more"."""
    names = [n for n in NAMES if re.match(r"model\.layers\.\d*[02468]\.mlp\.up", n)]
    text = describe_groups(names, TYPES)
    assert text.count("mlp.up_proj.weight") == 8 and text.endswith("; and 4 more")


def test_insights_group_their_tensors_and_reports_list_them_once() -> None:
    """A fine-tune whose upper six blocks blew up: each warning says the run in words, its
    evidence keeps all 54 names, and no report format lists the names under the insights."""
    old, new = deep_checkpoints()
    diffs, summary, _ = diff_pair(old, new)
    analysis = analyse(diffs, summary, old, new)
    by_code = {i["code"]: i for i in analysis["insights"]}
    for code in ("large-relative-change", "norm-explosion"):
        assert "model.layers.18-23: all tensors (54)" in by_code[code]["description"]
        assert sorted(by_code[code]["evidence"]["tensors"]) == sorted(UPPER)
    html = create_diff_report(diffs, summary, analysis, format="html")
    start = html.index('<ul class="insights">')
    section = html[start : html.index("</ul>", start)]
    assert "q_proj" not in section and section.count("model.layers.18-23") == 2
    for fmt in ("text", "markdown"):
        out = create_diff_report(diffs, summary, analysis, format=fmt)
        head = " ".join(out[: out.index("Layer types")].split())  # unwrapped
        assert "q_proj" not in head and head.count("model.layers.18-23: all tensors (54)") == 2
