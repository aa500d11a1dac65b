"""The HTML report as a document: self-contained, escaped, and every option visible."""

from __future__ import annotations

import dataclasses
import html
import json
import re

import numpy as np
import pytest

from model_diff.checkpoint import from_arrays
from model_diff.report import VisualizationConfig, create_diff_report
from model_diff.report.html import script_json

from .conftest import Diffed
from .pairs import XSS_NAME, XSS_TITLE_NAME, diff_pair


def _html(pair: Diffed, **cfg: object) -> str:
    return create_diff_report(
        pair.diffs,
        pair.summary,
        pair.analysis,
        format="html",
        **pair.kwargs(config=VisualizationConfig(**cfg)),
    )  # type: ignore[arg-type]


def _tensor_data(page: str) -> list[list[object]]:
    m = re.search(r'<script type="application/json" id="tensor-data">(.*?)</script>', page, re.S)
    assert m is not None
    return json.loads(m.group(1))  # type: ignore[no-any-return]


def test_self_contained_no_network_references(pair: Diffed) -> None:
    page = _html(pair)
    assert page.startswith("<!DOCTYPE html>")
    assert not re.search(r"<(link|img|iframe|object|embed)\b", page)
    assert not re.search(r"\bsrc=|@import|url\(", page)
    urls = set(re.findall(r"https?://[^\s\"'<>]+", page))
    assert urls == {"http://www.w3.org/2000/svg"}  # the SVG namespace name, never fetched
    assert "default-src 'none'" in page  # the page itself forbids any fetch


def test_hostile_names_are_escaped_in_markup_and_in_script_json() -> None:
    names = [XSS_NAME, XSS_TITLE_NAME, "a&b\u2028c"]
    diffs, summary, _ = diff_pair(
        from_arrays({}), from_arrays({n: np.ones(2, np.float32) for n in names})
    )
    page = create_diff_report(
        diffs,
        summary,
        None,
        format="html",
        old_name="<i>old</i>",
        config=VisualizationConfig(include_raw_data=True),
    )
    assert page.count("<script") == 2 and page.count("</script>") == 2
    assert "<i>old</i>" not in page and "&lt;i&gt;old&lt;/i&gt;" in page
    assert "&lt;/script&gt;&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<img" not in page
    data = _tensor_data(page)
    assert sorted(row[0] for row in data) == sorted(names)  # \u003c escapes decode back
    blob = re.search(r'id="tensor-data">(.*?)</script>', page, re.S).group(1)  # type: ignore[union-attr]
    assert "<" not in blob and ">" not in blob and "&" not in blob and "\u2028" not in blob


def test_script_json_escapes_what_could_end_a_script() -> None:
    assert str(script_json(["</script>&\u2029"])) == '["\\u003c/script\\u003e\\u0026\\u2029"]'


def test_color_scheme_changes_the_page(pair: Diffed) -> None:
    pages = {s: _html(pair, color_scheme=s) for s in ("default", "dark", "light")}
    for scheme, page in pages.items():
        assert f'<html lang="en" data-scheme="{scheme}">' in page
    assert len(set(pages.values())) == 3


def test_chart_width_and_height_size_every_chart(pair: Diffed) -> None:
    page = _html(pair, chart_width=640, chart_height=300)
    svgs = re.findall(r'<svg [^>]*class="chart (\w+)" width="(\d+)" height="(\d+)"', page)
    assert [s[0] for s in svgs] == ["depth", "layers", "cosine", "lowrank"]
    assert {(w, h) for _, w, h in svgs} == {("640", "300")}
    assert 'viewBox="0 0 640 300"' in page and 'width="800"' not in page


def test_include_raw_data_embeds_the_full_json_report(pair: Diffed) -> None:
    plain, raw = _html(pair), _html(pair, include_raw_data=True)
    assert 'id="raw-data"' not in plain and "Download JSON" not in plain
    m = re.search(r'<pre class="raw mono" id="raw-json">(.*?)</pre>', raw, re.S)
    assert m is not None
    embedded = json.loads(html.unescape(m.group(1)))
    expected = json.loads(
        create_diff_report(
            pair.diffs,
            pair.summary,
            pair.analysis,
            format="json",
            **pair.kwargs(config=VisualizationConfig(include_raw_data=True)),
        )
    )
    assert embedded == expected


@pytest.mark.parametrize("limit", [3, 10])
def test_max_layers_display_limits_the_table(pair: Diffed, limit: int) -> None:
    page = _html(pair, max_layers_display=limit)
    assert page.count("<tr data-i=") == limit == len(_tensor_data(page))
    assert f"max_layers_display = {limit}" in page
    full = _html(pair, max_layers_display=1000)
    assert full.count("<tr data-i=") == pair.summary.changed_parameters
    assert 'id="truncated"' not in full


def test_without_analysis_charts_explain_what_is_missing(pair: Diffed) -> None:
    page = create_diff_report(pair.diffs, pair.summary, None, format="html")
    assert "Not computed: no analysis was given" in page
    assert "No layer-type analysis was given." in page
    assert 'class="chart cosine"' in page  # drawn from the diffs alone


def test_low_rank_records_draw_the_low_rank_chart(pair: Diffed) -> None:
    """The engine's per-tensor low-rank records become bars; the lowest-rank deltas first."""
    planted = {
        d.name: {**(d.low_rank or {}), "rank_90": 1, "rank_99": 2}
        for d in pair.diffs
        if d.name.endswith("q_proj.weight")
    }
    diffs = [
        dataclasses.replace(d, low_rank=planted[d.name]) if d.name in planted else d
        for d in pair.diffs
    ]
    page = create_diff_report(diffs, pair.summary, pair.analysis, format="html")
    svg = re.search(r'<svg [^>]*class="chart lowrank".*?</svg>', page, re.S)
    assert svg is not None
    with_rank = [d for d in diffs if d.low_rank and d.low_rank.get("rank_90") is not None]
    assert svg.group(0).count('class="bar r90"') == min(16, len(with_rank))
    first_labels = re.findall(r"<title>([^<]*)</title>[^<]*</text>", svg.group(0))[:3]
    assert sorted(first_labels) == sorted(planted)  # rank 1 of 8: the lowest ratio
    assert "1/2 of 8" in svg.group(0)
    analysed = pair.analysis["low_rank"]["analysed"]
    assert f"<dt>analysed</dt><dd>{analysed}</dd>" in page


def test_no_low_rank_chart_without_low_rank_records(pair: Diffed) -> None:
    diffs = [dataclasses.replace(d, low_rank=None) for d in pair.diffs]
    analysis = {k: v for k, v in pair.analysis.items() if k != "low_rank"}
    page = create_diff_report(diffs, pair.summary, analysis, format="html")
    assert 'id="chart-lowrank"' not in page and 'class="chart depth"' in page


@pytest.mark.parametrize(
    "value, expected",
    [
        (0.0404, (0.05, 0.01)),
        (0.0352, (0.04, 0.01)),
        (37, (40.0, 10.0)),
        (0.0083, (0.01, 0.002)),
        (5, (5.0, 1.0)),
        (0.0, (1.0, 0.25)),
    ],
)
def test_axis_maximum_is_round_and_tight(value: float, expected: tuple[float, float]) -> None:
    """At most five round steps, the first round value at or above the data maximum."""
    from model_diff.report.charts import _nice_max

    vmax, step = _nice_max(value)
    assert vmax == pytest.approx(expected[0]) and step == pytest.approx(expected[1])
