"""The three-way report in all four formats: golden text and Markdown, strict JSON, escaped
HTML with inline SVG charts."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import pytest

from model_diff import ThreeWay, compare3, render_threeway
from model_diff.checkpoint import from_arrays
from model_diff.toy import toy_transformer

GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("MODEL_DIFF_UPDATE_GOLDEN") == "1"


def triple(evil: bool = False) -> ThreeWay:
    """base; ours retrains the head and block 1's q_proj; theirs changes q_proj too (a
    conflict), block 2's MLP, removes the final norm and adds a tensor."""
    base = toy_transformer(n_blocks=3, d_model=8, vocab=16, seed=0)
    r = np.random.default_rng(9)
    ours, theirs = dict(base), dict(base)
    q = "model.layers.1.self_attn.q_proj.weight"
    ours["lm_head.weight"] = base["lm_head.weight"] + np.float32(0.01)
    ours[q] = (base[q] + r.standard_normal(base[q].shape) * 0.01).astype(np.float32)
    theirs[q] = (base[q] + r.standard_normal(base[q].shape) * 0.02).astype(np.float32)
    theirs["model.layers.2.mlp.up_proj.weight"] = base["model.layers.2.mlp.up_proj.weight"] * 2
    del theirs["model.norm.weight"]
    ours["model.norm.weight"] = base["model.norm.weight"] * 2  # a delete/modify conflict
    theirs["adapter.scale"] = np.ones(2, np.float32)
    if evil:
        name = "model.layers.0.<script>alert(1)</script>|`x`"
        ours[name] = np.zeros(2, np.float32)
        theirs[name] = np.ones(2, np.float32)
    return compare3(
        from_arrays(base, path="base.safetensors", format="safetensors"),
        from_arrays(ours, path="ours.safetensors", format="safetensors"),
        from_arrays(theirs, path="theirs.safetensors", format="safetensors"),
        workers=1,
    )


@pytest.mark.parametrize(("fmt", "suffix"), [("text", "txt"), ("markdown", "md")])
def test_report_matches_golden_file(fmt: str, suffix: str) -> None:
    out = render_threeway(triple(), fmt)
    path = GOLDEN / f"compare3.{suffix}"
    if UPDATE:
        path.write_text(out, encoding="utf-8")
    assert out == path.read_text(encoding="utf-8")


def test_text_leads_with_the_readiness_verdict() -> None:
    text = render_threeway(triple(), "text")
    head = " ".join(text.split("\n\n")[1].split())  # the lines wrap at 80 columns
    assert head.startswith("Merge readiness")
    assert "2 conflicts" in head and "arithmetic can merge 1" in head
    assert "model.layers.1.self_attn.q_proj.weight" in text


def test_json_is_strict_and_complete() -> None:
    result = triple()
    text = render_threeway(result, "json")

    def refuse(const: str) -> None:
        raise ValueError(const)

    doc = json.loads(text, parse_constant=refuse)
    assert doc["schema"] == "model-diff.compare3"
    assert len(doc["tensors"]) == len(result.tensors)
    by = {t["name"]: t for t in doc["tensors"]}
    q = by["model.layers.1.self_attn.q_proj.weight"]
    assert q["kind"] == "conflict" and q["conflict"] == "content"
    assert q["update"]["cosine"] == pytest.approx(
        result.tensors[
            [t.change.name for t in result.tensors].index("model.layers.1.self_attn.q_proj.weight")
        ].stats.cosine
    )  # type: ignore[union-attr]
    assert by["model.norm.weight"]["conflict"] == "delete-modify"
    assert by["model.norm.weight"]["theirs"] == "removed"
    assert by["adapter.scale"]["theirs"] == "added"
    assert doc["readiness"]["conflicts"] == result.readiness.conflicts
    assert len(text.splitlines()) > len(result.tensors)  # one line per tensor record


def test_html_escapes_names_and_draws_svg_without_scripts() -> None:
    html = render_threeway(triple(evil=True), "html")
    assert "<script>alert(1)" not in html and "&lt;script&gt;alert(1)" in html
    assert "<script" not in html  # a static page: no script at all
    assert html.count("<svg") == 3
    assert 'id="chart-cosine"' in html and 'class="bar k-conflict"' in html


def test_markdown_puts_names_in_code_spans() -> None:
    md = render_threeway(triple(evil=True), "markdown")
    line = next(ln for ln in md.splitlines() if "alert" in ln)
    assert re.search(r"``[^`]*<script>alert\(1\)</script>\\\|`x`[^`]*``", line), line


def test_reports_are_deterministic() -> None:
    for fmt in ("text", "json", "markdown", "html"):
        assert render_threeway(triple(), fmt) == render_threeway(triple(), fmt)


def test_unknown_format_is_refused() -> None:
    with pytest.raises(ValueError, match="format"):
        render_threeway(triple(), "pdf")
