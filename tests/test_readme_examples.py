"""Every ```python block of README.md runs as written, on the files it names.

The blocks name files (model_v1.pt, base/, ckpt-1000/, ...); the fixture writes them into a
temp working directory from the toy transformer (a base and fine-tunes with frozen embeddings
and later blocks changed more), so the values the README's comments show can be checked too.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from model_diff.toy import fine_tune, save_safetensors, toy_transformer
from tests.conftest import PROJECT_ROOT

BLOCKS = re.findall(r"```python\n(.*?)```", (PROJECT_ROOT / "README.md").read_text("utf-8"), re.S)


def _hf_dir(path: Path, state: dict[str, np.ndarray]) -> None:
    path.mkdir()
    save_safetensors(path / "model.safetensors", state)
    (path / "config.json").write_text(json.dumps({"model_type": "llama", "hidden_size": 32}))


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    torch = pytest.importorskip("torch")
    base = toy_transformer(n_blocks=4, d_model=32, vocab=128, seed=0)
    tuned = fine_tune(base, seed=1)
    for name, state in (("model_v1", base), ("model_v2", tuned)):
        torch.save(
            {k: torch.from_numpy(np.array(v)) for k, v in state.items()}, tmp_path / f"{name}.pt"
        )
        save_safetensors(tmp_path / f"{name}.safetensors", state)
    _hf_dir(tmp_path / "base", base)
    _hf_dir(tmp_path / "finetuned", tuned)
    state = base
    for step in (1000, 2000, 3000):
        _hf_dir(tmp_path / f"ckpt-{step}", state)
        state = fine_tune(state, seed=step)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_readme_has_python_examples() -> None:
    """The README shows the API in several Python blocks (so the test below checks something)."""
    assert len(BLOCKS) >= 5


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_python_block_runs(workdir: Path, index: int) -> None:
    """README Python block number ``index`` runs as written."""
    namespace: dict[str, object] = {}
    exec(compile(BLOCKS[index], f"<README python block {index}>", "exec"), namespace)


def test_readme_analysis_example_shows_what_its_comments_say(workdir: Path) -> None:
    """The analysis example's commented values hold on a base/fine-tune pair."""
    (block,) = [b for b in BLOCKS if '.diff("base/", "finetuned/")' in b]
    namespace: dict[str, object] = {}
    exec(compile(block, "<README analysis block>", "exec"), namespace)
    analysis = namespace["analysis"]
    assert isinstance(analysis, dict)
    assert analysis["change_pattern"] == "inverse_gradient"
    assert {"count", "changed", "frozen", "avg_change"} <= set(
        analysis["layer_analysis"]["attention"]
    )
    assert [i["code"] for i in analysis["insights"]] == ["change-pattern", "frozen-layers"]


def test_readme_timeline_example_shows_what_its_comment_says(workdir: Path) -> None:
    """compare_training_stages' first row is the embedding, frozen across the stages."""
    (block,) = [b for b in BLOCKS if "compare_training_stages(" in b]
    namespace: dict[str, object] = {}
    exec(compile(block, "<README timeline block>", "exec"), namespace)
    result = namespace["result"]
    assert isinstance(result, dict)
    row = result["rows"][0]
    assert row["label"] == "embedding" and row["trend"] == "frozen"
    assert len(row["changes"]) == 2  # two consecutive pairs of three checkpoints
