"""Reports that read well at depth (issue 16, item 3 and acceptance 3): no e-notation in any
text, Markdown or HTML output of ``compare`` and ``timeline`` on the report fixtures, and
the compare report's blocks x layer-types heatmap."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from model_diff.checkpoint import from_arrays
from model_diff.cli import cli
from model_diff.report import create_diff_report
from model_diff.toy import save_safetensors
from tests.model_diff.training_run import save_run

from .pairs import (
    DEEP_BLOWN,
    DEEP_FROZEN_BLOCK,
    XSS_TITLE_NAME,
    analyse,
    deep_arrays,
    deep_checkpoints,
    diff_pair,
    golden_checkpoints,
)

#: e-notation as any report could print it: 1.2e-05, 1.50e+03%, 4E+7.
E_NOTATION = re.compile(r"\d[eE][+-]\d")
READ_FORMATS = ("text", "markdown", "html")


def _report(pair: str, fmt: str) -> str:
    old, new = golden_checkpoints() if pair == "golden" else deep_checkpoints()
    diffs, summary, _ = diff_pair(old, new)
    return create_diff_report(diffs, summary, analyse(diffs, summary, old, new), format=fmt)


@pytest.mark.parametrize("fmt", READ_FORMATS)
@pytest.mark.parametrize("pair", ["golden", "deep"])
def test_compare_reports_never_print_e_notation(pair: str, fmt: str) -> None:
    """The golden pair and the deep pair (upper blocks x1000: changes of 100,000%), in text,
    Markdown and HTML (SVG coordinates, hover titles and embedded data included)."""
    out = _report(pair, fmt)
    assert not E_NOTATION.findall(out), [
        out[max(0, m.start() - 40) : m.end() + 10] for m in E_NOTATION.finditer(out)
    ][:5]
    if pair == "deep" and fmt != "html":
        assert "1,010x" in out  # the largest change reads as an x-fold


@pytest.fixture(scope="module")
def deep_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("deep")
    base, ft = deep_arrays()
    save_safetensors(tmp / "base.safetensors", base)
    save_safetensors(tmp / "deep.safetensors", ft)
    return tmp / "base.safetensors", tmp / "deep.safetensors"


@pytest.mark.parametrize("fmt", READ_FORMATS)
def test_compare_command_never_prints_e_notation(deep_files: tuple[Path, Path], fmt: str) -> None:
    """``model-diff compare`` on the deep pair's files."""
    res = CliRunner().invoke(cli, ["compare", *map(str, deep_files), "--format", fmt])
    assert res.exit_code == 0, res.stderr
    assert not E_NOTATION.search(res.stdout)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("timeline")
    save_run(tmp / "run")
    return tmp / "run"


@pytest.mark.parametrize("fmt", READ_FORMATS)
def test_timeline_reports_never_print_e_notation(run_dir: Path, fmt: str) -> None:
    """``model-diff timeline`` over the timeline test run (a 100x spike, then NaN)."""
    res = CliRunner().invoke(cli, ["timeline", str(run_dir), "--format", fmt])
    assert res.exit_code == 0, res.stderr
    assert not E_NOTATION.search(res.stdout)
    assert re.search(r"\d,?\d*x", res.stdout)  # the spike reads as an x-fold


# -- the blocks x layer-types heatmap ----------------------------------------------------------
def _heatmap(html: str) -> str:
    m = re.search(r'<svg[^>]*class="chart blockheat".*?</svg>', html, re.S)
    assert m is not None
    return m.group(0)


def _cells(svg: str) -> dict[tuple[int, str], tuple[str, str]]:
    """(block, layer type) -> (class, hover title) of each heatmap cell."""
    found = re.findall(
        r'<rect [^>]*class="cell (\w+)"[^>]*data-block="(\d+)" data-type="(\w+)">'
        r"<title>([^<]*)</title>",
        svg,
    )
    return {(int(b), t): (cls, title) for cls, b, t, title in found}


def test_heatmap_marks_frozen_and_nan_cells_and_colours_the_rest() -> None:
    """The deep pair: 24 rows x 3 types; block 2 hatched as frozen; block 12's MLP red with
    its NaN count; the blown-up blocks at the top of the log scale, the others below."""
    svg = _heatmap(_report("deep", "html"))
    cells = _cells(svg)
    assert len(cells) == 24 * 3
    assert {t for _, t in cells} == {"attention", "mlp", "norm"}
    for t in ("attention", "mlp", "norm"):
        assert cells[(DEEP_FROZEN_BLOCK, t)][0] == "frozen"
    assert cells[(12, "mlp")][0] == "nan" and "1 with NaN/Inf" in cells[(12, "mlp")][1]
    assert cells[(12, "attention")][0] == "value"
    top = re.findall(r'class="cell value" fill="(#[0-9a-f]{6})" data-block="(\d+)"', svg)
    fills = {int(b): f for f, b in top}
    red = {b: int(f[1:3], 16) for b, f in fills.items()}  # viridis: purple (0x44) to yellow
    assert min(red[b] for b in DEEP_BLOWN) > 0xC0
    assert max(r for b, r in red.items() if b not in DEEP_BLOWN) < 0x80
    title = cells[(20, "attention")][1]
    assert re.search(r"model\.layers\.20 · attention: avg relative change [\d,]+x over 4", title)


def test_heatmap_only_for_six_blocks_or_more() -> None:
    """The golden pair has three blocks: no heatmap (the depth chart shows them)."""
    assert "blockheat" not in _report("golden", "html")


def test_heatmap_escapes_hostile_block_names_and_is_deterministic() -> None:
    """A block stack named as a script injection reaches the heatmap escaped, twice alike."""
    base, ft = deep_arrays()
    hostile = {
        f"{XSS_TITLE_NAME}.layers.{i}.mlp.up_proj.weight": np.ones(4, np.float32) * (i + 1)
        for i in range(6)
    }
    old = from_arrays({**base, **hostile}, path="a.safetensors", format="safetensors")
    new = from_arrays(
        {**ft, **{k: v * 2 for k, v in hostile.items()}}, path="b.safetensors", format="safetensors"
    )
    diffs, summary, _ = diff_pair(old, new)
    analysis = analyse(diffs, summary, old, new)
    html = create_diff_report(diffs, summary, analysis, format="html")
    svg = _heatmap(html)
    assert "<script>" not in svg and "<img" not in svg
    assert "&lt;/script&gt;&lt;script&gt;document.title" in svg
    assert html == create_diff_report(diffs, summary, analysis, format="html")
