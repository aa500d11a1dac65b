"""The deep pair's compare report in real headless Chromium: every chart label lies inside its
chart (measured with getBBox, not estimated) and the blocks x layer-types heatmap paints the
blown-up blocks yellow, the NaN cell red and the frozen block hatched."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from model_diff.report import create_diff_report

from .chromium import CHROMIUM, run_chromium
from .pairs import analyse, deep_checkpoints, diff_pair
from .png import read_png

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (CI installs it)"),
]

#: Appended to a copy of the page: lists every chart text whose box leaves its viewBox.
MEASURE = """<script>
(function () {
  var out = [], n = 0;
  document.querySelectorAll("svg.chart").forEach(function (svg) {
    var vb = svg.viewBox.baseVal;
    svg.querySelectorAll("text").forEach(function (t) {
      var b = t.getBBox();
      n += 1;
      if (b.x < vb.x - 0.5 || b.y < vb.y - 0.5 || b.x + b.width > vb.x + vb.width + 0.5 ||
          b.y + b.height > vb.y + vb.height + 0.5) {
        out.push(svg.getAttribute("class") + ": " + t.textContent + " @" +
                 [b.x, b.y, b.width, b.height].map(Math.round).join(","));
      }
    });
  });
  document.body.setAttribute("data-outside", JSON.stringify(out));
  document.body.setAttribute("data-measured", String(n));
})();
</script></body>"""
#: Appended to another copy: only the heatmap's figure is shown, at the top of the page.
ONLY_HEATMAP = (
    "<style>header,section:not(#charts),footer,#charts>h2,"
    "#charts figure:not(#chart-blockheat){display:none!important}</style></head>"
)
YELLOW = (0xFD, 0xE7, 0x25)  # the ramp's top
NAN_RGB = (0xE0, 0x31, 0x31)  # heat.NAN_FILL


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> str:
    old, new = deep_checkpoints()
    diffs, summary, _ = diff_pair(old, new)
    return create_diff_report(diffs, summary, analyse(diffs, summary, old, new), format="html")


def test_every_chart_label_fits_inside_its_chart(page: str, tmp_path: Path) -> None:
    """getBBox of every <text> of every chart (the depth chart's "1,250x" ticks included)
    stays inside the chart's viewBox."""
    html = tmp_path / "measure.html"
    html.write_text(page.replace("</body>", MEASURE), encoding="utf-8")
    dom = run_chromium(tmp_path, html.as_uri(), "--window-size=1200,900", "--dump-dom")
    measured = re.search(r'data-measured="(\d+)"', dom)
    outside = re.search(r'data-outside="([^"]*)"', dom)
    assert measured is not None and outside is not None
    assert int(measured.group(1)) > 100  # the script ran over the charts
    assert json.loads(outside.group(1).replace("&quot;", '"')) == []


def _near(pixels: np.ndarray, rgb: tuple[int, int, int], tol: int = 40) -> np.ndarray:
    return np.abs(pixels[..., :3].astype(int) - rgb).sum(-1) < tol


def test_heatmap_renders_blown_up_rows_nan_and_frozen(page: str, tmp_path: Path) -> None:
    """Screenshot of the heatmap alone: six yellow rows (blocks 18-23, three cells each) at
    the bottom of the grid, one red NaN cell, and the hatch of the frozen block."""
    html = tmp_path / "heatmap.html"
    html.write_text(page.replace("</head>", ONLY_HEATMAP, 1), encoding="utf-8")
    shot = tmp_path / "heatmap.png"
    run_chromium(tmp_path, html.as_uri(), "--window-size=900,900", f"--screenshot={shot}")
    pixels = read_png(shot)
    yellow = _near(pixels, YELLOW)
    ys = np.nonzero(yellow.sum(1) > 150)[0]  # rows crossing the three yellow cells
    assert len(ys) > 60, len(ys)  # 6 rows x 18px, less the cell borders
    red = _near(pixels, NAN_RGB)
    assert red.sum() > 300, red.sum()  # one cell (~110 x 18 px, less its white marks)
    red_rows = np.nonzero(red.sum(1) > 20)[0]
    assert red_rows.max() < ys.min()  # block 12 lies above blocks 18-23
