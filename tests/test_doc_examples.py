"""Every ```python block of README.md and docs/*.md runs as written, on the files it names.

The blocks name files (model_v1.pt, base/, ckpt-1000/, ours.pt, ...); the fixture writes them
into a temp working directory from the toy transformer (a base and fine-tunes with frozen
embeddings and later blocks changed more), so the values the comments show can be checked
too. A block that is not meant to run (a signature, an excerpt) is fenced as ```text.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from model_diff.toy import fine_tune, save_safetensors, toy_transformer
from tests.conftest import PROJECT_ROOT

DOCS = [PROJECT_ROOT / "README.md", *sorted((PROJECT_ROOT / "docs").glob("*.md"))]


def python_blocks(path: Path) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", path.read_text("utf-8"), re.S | re.M)


BLOCKS = [
    (path.relative_to(PROJECT_ROOT).as_posix(), index, block)
    for path in DOCS
    for index, block in enumerate(python_blocks(path))
]


def _block(file: str, marker: str) -> str:
    (block,) = [b for f, _, b in BLOCKS if f == file and marker in b]
    return block


def _hf_dir(path: Path, state: dict[str, np.ndarray]) -> None:
    path.mkdir()
    save_safetensors(path / "model.safetensors", state)
    (path / "config.json").write_text(json.dumps({"model_type": "llama", "hidden_size": 32}))


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    torch = pytest.importorskip("torch")

    def save_pt(path: Path, state: dict[str, np.ndarray]) -> None:
        torch.save({k: torch.from_numpy(np.array(v)) for k, v in state.items()}, path)

    base = toy_transformer(n_blocks=4, d_model=32, vocab=128, seed=0)
    tuned = fine_tune(base, seed=1)
    for name, state in (("model_v1", base), ("model_v2", tuned)):
        save_pt(tmp_path / f"{name}.pt", state)
        save_safetensors(tmp_path / f"{name}.safetensors", state)
    _hf_dir(tmp_path / "base", base)
    _hf_dir(tmp_path / "finetuned", tuned)
    state = base
    for step in (1000, 2000, 3000):
        _hf_dir(tmp_path / f"ckpt-{step}", state)
        state = fine_tune(state, seed=step)
    # three-way: two fine-tunes of one base (docs/merge.md)
    save_pt(tmp_path / "base.pt", base)
    save_pt(tmp_path / "ours.pt", tuned)
    save_pt(tmp_path / "theirs.pt", fine_tune(base, seed=2))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_the_docs_show_python_examples() -> None:
    """README.md shows one Python example and docs/ more (so the test below checks something)."""
    files = [f for f, _, _ in BLOCKS]
    assert files.count("README.md") == 1
    assert {"docs/api.md", "docs/analysis.md", "docs/merge.md"} <= set(files)
    assert len(BLOCKS) >= 5


def test_readme_example_is_the_original_apis_first() -> None:
    """The README's one example is the original README's first: compare, analyze, HTML."""
    (block,) = [b for f, _, b in BLOCKS if f == "README.md"]
    for call in ("compare_checkpoints(", "DiffAnalyzer().analyze(", 'format="html"'):
        assert call in block


@pytest.mark.parametrize(("file", "index", "block"), BLOCKS, ids=[f"{f}-{i}" for f, i, _ in BLOCKS])
def test_python_block_runs(workdir: Path, file: str, index: int, block: str) -> None:
    """Python block number ``index`` of ``file`` runs as written."""
    namespace: dict[str, object] = {}
    exec(compile(block, f"<{file} python block {index}>", "exec"), namespace)


def test_readme_example_writes_the_html_report(workdir: Path) -> None:
    """The README's example writes an HTML report labelled v1 and v2."""
    (block,) = [b for f, _, b in BLOCKS if f == "README.md"]
    exec(compile(block, "<README.md>", "exec"), {})
    html = (workdir / "diff_report.html").read_text("utf-8")
    assert html.startswith("<!DOCTYPE html>") and "v1" in html and "v2" in html


def test_reports_example_renders_dark_html(workdir: Path) -> None:
    """docs/api.md's Reports example gives a dark-scheme HTML page with its labels."""
    namespace: dict[str, object] = {}
    exec(compile(_block("docs/api.md", "VisualizationConfig("), "<api Reports>", "exec"), namespace)
    html = namespace["html"]
    assert isinstance(html, str) and 'data-scheme="dark"' in html and "Fine-tuned" in html


def test_analysis_example_shows_what_its_comments_say(workdir: Path) -> None:
    """The analysis example's commented values hold on a base/fine-tune pair."""
    block = _block("docs/analysis.md", '.diff("base/", "finetuned/")')
    namespace: dict[str, object] = {}
    exec(compile(block, "<analysis block>", "exec"), namespace)
    analysis = namespace["analysis"]
    assert isinstance(analysis, dict)
    assert analysis["change_pattern"] == "inverse_gradient"
    attention = analysis["layer_analysis"]["attention"]
    assert (attention["count"], attention["changed"], attention["frozen"]) == (16, 16, 0)
    assert [i["code"] for i in analysis["insights"]] == ["change-pattern", "frozen-layers"]


def test_timeline_example_shows_what_its_comments_say(workdir: Path) -> None:
    """compare_training_stages' first step is inverse_gradient; its first row is the
    embedding, outside blocks, frozen across the stages."""
    namespace: dict[str, object] = {}
    exec(compile(_block("docs/analysis.md", "compare_training_stages("), "<tl>", "exec"), namespace)
    result = namespace["result"]
    assert isinstance(result, dict)
    assert result["steps"][0]["change_pattern"] == "inverse_gradient"
    row = result["rows"][0]
    assert (row["label"], row["kind"], row["trend"]) == ("embedding", "outside_blocks", "frozen")
    assert len(row["changes"]) == 2  # two consecutive pairs of three checkpoints


def test_merge_example_merges_and_writes(workdir: Path) -> None:
    """docs/merge.md's example resolves the two fine-tunes' conflicts with ties and writes."""
    namespace: dict[str, object] = {}
    exec(compile(_block("docs/merge.md", "merge_checkpoints("), "<merge>", "exec"), namespace)
    result = namespace["result"]
    assert result.written and (workdir / "merged.pt").is_file()  # type: ignore[attr-defined]
