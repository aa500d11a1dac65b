"""The HTML report in real headless Chromium: charts drawn, hostile names inert, table live."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from model_diff.report import VisualizationConfig, create_diff_report

from .chromium import CHROMIUM, run_chromium
from .pairs import XSS_NAME, XSS_TITLE_NAME, analyse, diff_pair, golden_arrays
from .png import read_png

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (CI installs it)"),
]


_VOID = {"wbr", "br", "input", "meta", "img", "hr", "link"}


class _Dom(HTMLParser):
    """Collects the SVG charts (with their child element counts), titles and cell texts."""

    def __init__(self) -> None:
        super().__init__()
        self.svgs: list[dict[str, object]] = []
        self.depth = 0
        self.title = ""
        self.cells: list[str] = []
        self.scripts = 0
        self.body_attrs: dict[str, str | None] = {}
        self.imgs = 0
        self.rows: list[tuple[str, bool]] = []
        self._in: list[str] = []
        self._td: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "svg":
            self.svgs.append({"class": a.get("class"), "children": 0})
            self.depth += 1
        elif self.depth and tag in ("rect", "circle", "polyline", "line", "text"):
            self.svgs[-1]["children"] = int(self.svgs[-1]["children"]) + 1  # type: ignore[call-overload]
        if tag == "script":
            self.scripts += 1
        if tag == "img":
            self.imgs += 1
        if tag == "body":
            self.body_attrs = a
        if tag == "tr" and "data-i" in a:
            self.rows.append(("", "hidden" in a))
        if tag == "td":
            self._td = []
        if tag not in _VOID:
            self._in.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag == "svg":
            self.depth -= 1
        if tag == "td" and self._td is not None:
            text = "".join(self._td)
            self.cells.append(text)
            if self.rows and not self.rows[-1][0]:
                self.rows[-1] = (text, self.rows[-1][1])
            self._td = None
        if self._in:
            self._in.pop()

    def handle_data(self, data: str) -> None:
        if self._in and self._in[-1] == "title" and not self.depth:
            self.title += data
        if self._td is not None:
            self._td.append(data)


@pytest.fixture(scope="module")
def hostile_report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from model_diff.checkpoint import from_arrays

    base, ft = golden_arrays(n_blocks=6, d_model=16, vocab=32)
    ft[XSS_TITLE_NAME] = np.ones(2, np.float32)
    old = from_arrays(base, path="base.safetensors", format="safetensors")
    new = from_arrays(ft, path="finetuned.safetensors", format="safetensors")
    diffs, summary, _ = diff_pair(old, new)
    page = create_diff_report(
        diffs,
        summary,
        analyse(diffs, summary, old, new),
        format="html",
        old_name="base",
        new_name="finetuned",
        config=VisualizationConfig(include_raw_data=True),
    )
    path = tmp_path_factory.mktemp("report") / "report.html"
    path.write_text(page, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def loaded(hostile_report: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """One Chromium run: the DOM after the scripts ran, and a screenshot.

    The URL asks the table for a filtered, sorted view (#q=script&sort=-rel): the filter keeps
    exactly the two hostile names, the sort reorders every row by relative change.
    """
    tmp = tmp_path_factory.mktemp("chromium")
    shot = tmp / "report.png"
    # Half device scale: a 1000x1600 CSS-pixel page (header to depth chart) in 500x800 pixels,
    # a quarter of the PNG to decode.
    dom_text = run_chromium(
        tmp,
        hostile_report.as_uri() + "#q=script&sort=-rel",
        "--window-size=1000,1600",
        "--force-device-scale-factor=0.5",
        f"--screenshot={shot}",
        "--dump-dom",
    )
    return dom_text, shot


def test_charts_render_and_hostile_names_run_nothing(loaded: tuple[str, Path]) -> None:
    """Acceptance 1: non-empty SVG charts, a non-blank screenshot, the payloads shown as text."""
    dom_text, shot = loaded
    dom = _Dom()
    dom.feed(dom_text)
    charts = {str(s["class"]): int(s["children"]) for s in dom.svgs}  # type: ignore[call-overload]
    assert set(charts) == {
        "chart depth",
        "chart blockheat",  # six blocks: the blocks x layer-types heatmap is drawn
        "chart layers",
        "chart cosine",
        "chart lowrank",
    }
    assert all(n >= 10 for n in charts.values()), charts
    # The payloads did not run: title unchanged, no attribute set, no element injected.
    assert dom.title == "model-diff: base → finetuned"
    assert "data-pwned" not in dom.body_attrs
    assert dom.imgs == 0 and dom.scripts == 2
    assert 'class="js"' in dom_text  # the table script ran (after the payloads, if any)
    # ... and they are the visible rows of the filtered table, as text.
    visible = [name for name, hidden in dom.rows if not hidden]
    assert sorted(visible) == sorted([XSS_NAME, XSS_TITLE_NAME])
    pixels = read_png(shot)
    assert pixels.shape[:2] == (800, 500)
    colours = np.unique(pixels.reshape(-1, pixels.shape[2])[:, :3], axis=0)
    assert len(colours) > 50  # text, lines and bars; a blank page has one or two colours
    # The depth chart's series are painted: attention blue and MLP amber of the default scheme.
    for rgb in ([0x22, 0x8B, 0xE6], [0xF5, 0x9F, 0x00]):
        assert (np.abs(pixels[..., :3].astype(int) - rgb).sum(-1) < 30).sum() > 50, rgb


def test_table_filters_and_sorts_in_the_browser(loaded: tuple[str, Path]) -> None:
    """#q= hides rows whose name lacks the text; #sort=-rel: by relative change, descending."""
    dom_text, _ = loaded
    dom = _Dom()
    dom.feed(dom_text)
    hidden = [name for name, is_hidden in dom.rows if is_hidden]
    assert hidden and not any("script" in n for n in hidden)
    assert re.search(r'<th class="num" data-col="2" aria-sort="descending">', dom_text)
    rel = [
        float(m)
        for m in re.findall(
            r'<tr data-i="\d+" data-change="modified" hidden="">(?:<td.*?</td>){4}<td class="num">'
            r"(?:<span[^>]*></span>)?([0-9.]+)%</td>",
            dom_text,
        )
    ]
    assert len(rel) >= 5 and rel == sorted(rel, reverse=True)
