"""The original model-diff README's Python examples run as written against this package.

The seed README (tests/data/seed_README.txt, a verbatim copy of the original's rendered
README) lost its indentation and newlines around code blocks when it was rendered; the
extraction below only splits the blocks apart and re-indents the one-line bodies of ``for`` and
``with`` statements. No statement is changed.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from model_diff.toy import fine_tune, toy_transformer

SEED = Path(__file__).parent / "data" / "seed_README.txt"


def seed_examples() -> list[str]:
    text = SEED.read_text(encoding="utf-8")
    start = text.index("from model_diff import")
    end = text.index("Model Diff detects several patterns")
    blocks = re.split(r"(?=from model_diff import)", text[start:end])
    out = []
    for block in blocks:
        if not block.strip():
            continue
        lines = block.strip("\n").splitlines()
        fixed: list[str] = []
        for line in lines:
            if fixed and fixed[-1].rstrip().endswith(":") and not fixed[-1].startswith("#"):
                line = "    " + line
            fixed.append(line)
        out.append("\n".join(fixed) + "\n")
    return out


def test_seed_has_the_five_documented_examples() -> None:
    """The extraction finds the five code examples of the seed README."""
    blocks = seed_examples()
    assert len(blocks) == 5
    assert all(b.startswith("from model_diff import") for b in blocks)


@pytest.fixture
def seed_workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """model_v1.pt, model_v2.pt and model.pt as the examples expect, in a temp cwd."""
    torch = pytest.importorskip("torch")
    base = toy_transformer(n_blocks=3, d_model=32, vocab=128, seed=0)
    tuned = fine_tune(base, seed=1)

    def save(path: Path, sd: dict[str, np.ndarray]) -> None:
        torch.save({k: torch.from_numpy(np.array(v)) for k, v in sd.items()}, path)

    save(tmp_path / "model_v1.pt", base)
    save(tmp_path / "model_v2.pt", tuned)
    save(tmp_path / "model.pt", base)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_seed_examples_run_as_written(
    seed_workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every seed example runs in sequence, sharing names as a reader following along would."""
    from model_diff import load_checkpoint

    namespace: dict[str, object] = {
        # The diffing example uses these two names without defining them.
        "old_checkpoint": load_checkpoint("model_v1.pt"),
        "new_checkpoint": load_checkpoint("model_v2.pt"),
    }
    for block in seed_examples():
        exec(compile(block, "<seed README>", "exec"), namespace)
    out = capsys.readouterr().out
    assert "Parameters: " in out and "Layers: " in out
    assert "Modified: " in out and "Avg cosine similarity: 0.9" in out
    assert "Pattern: " in out and "avg change:" in out
    # The embeddings are frozen in the fine-tune: the default analysis names them, although
    # compare_checkpoints' default (include_unchanged=False) leaves them out of `diffs`.
    assert "frozen" in out and "changed: model.embed_tokens.weight." in out
    html = (seed_workdir / "diff_report.html").read_text(encoding="utf-8")
    assert html.lstrip().lower().startswith("<!doctype html>")
    for name in ("html_report", "json_report", "text_report"):
        assert isinstance(namespace[name], str) and namespace[name]
