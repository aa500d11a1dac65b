"""The timeline's HTML report in real headless Chromium (issue 16, acceptance 1): the heatmap
is painted with the NaN cells of step 5 red, the step-3 spike outlined, frozen cells hatched,
and the page runs no script."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from model_diff.cli import cli
from tests.model_diff.training_run import NAN_BLOCKS, SPIKE_STEP, save_run

from .chromium import CHROMIUM, run_chromium
from .png import read_png

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (CI installs it)"),
]

NAN_RGB = (0xE0, 0x31, 0x31)  # timeline_html.NAN_FILL
JUMP_RGB = (0xE8, 0x59, 0x0C)  # --warn: the outline of a jump cell
FROZEN_RGB = (0xE9, 0xEC, 0xEF)  # --frozen-bg of the hatch


def _count(pixels: np.ndarray, rgb: tuple[int, int, int], tol: int = 24) -> int:
    return int((np.abs(pixels[..., :3].astype(int) - rgb).sum(-1) < tol).sum())


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("timeline-html")
    save_run(tmp / "run")
    out = tmp / "timeline.html"
    res = CliRunner().invoke(
        cli, ["timeline", str(tmp / "run"), "--format", "html", "-o", str(out)]
    )
    assert res.exit_code == 0, res.stderr
    return out


def test_heatmap_shows_the_spike_and_the_nan_cells(page: Path, tmp_path: Path) -> None:
    """One Chromium run: the DOM has the heatmap with 3 NaN cells at step 5 and 8 jump
    outlines at step 3; the screenshot (1100x1000 CSS px at half scale) shows them painted."""
    shot = tmp_path / "timeline.png"
    dom = run_chromium(
        tmp_path,
        page.as_uri(),
        "--window-size=1100,1000",
        "--force-device-scale-factor=0.5",
        f"--screenshot={shot}",
        "--dump-dom",
    )
    assert "<script" not in dom
    assert re.search(r'<svg[^>]*class="chart heatmap"', dom)
    nan = re.findall(r'class="cell nan" fill="#e03131" data-step="(\d)" data-row="([^"]+)"', dom)
    assert sorted(nan) == [("5", f"model.layers.{b}") for b in NAN_BLOCKS]
    jumps = re.findall(r'class="jump-mark" data-step="(\d)"', dom)
    assert jumps == [str(SPIKE_STEP)] * 8
    pixels = read_png(shot)
    assert pixels.shape[:2] == (500, 550)
    # The NaN cells: three red cells stacked in the last column (88x22 CSS px each).
    red = np.abs(pixels[..., :3].astype(int) - NAN_RGB).sum(-1) < 24
    assert red.sum() > 800, red.sum()  # ~1,400 pixels at half scale
    ys = np.nonzero(red.sum(1) >= 30)[0]  # rows crossing a cell (not the legend's swatch)
    xs = np.nonzero(red[ys].sum(0) >= 5)[0]
    x0, x1, y0, y1 = xs.min(), xs.max(), ys.min(), ys.max()
    cw, ch = x1 - x0 + 1, (y1 - y0 + 1) / 3
    assert 38 <= cw <= 48 and 9 <= ch <= 13, (cw, ch)  # one column, three rows of cells
    # The spike column (two to the left) is outlined in orange on every row; its neighbour
    # is not.
    band = slice(int(y0 - 3 * ch - 2), int(y1 + 2 * ch + 2))

    def orange(col: int) -> int:
        cols = slice(x0 - col * cw + 4, x0 - (col - 1) * cw - 4)  # inside the column
        return _count(pixels[band, cols], JUMP_RGB, tol=90)

    assert orange(2) > 60 and orange(3) < 5, (orange(2), orange(3))
    assert _count(pixels, FROZEN_RGB) > 100
