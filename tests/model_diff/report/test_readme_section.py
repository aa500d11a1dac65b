"""The README's "Reports" Python example runs as written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from model_diff.toy import fine_tune, save_safetensors, toy_transformer


def _reports_example(root: Path) -> str:
    readme = (root / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## Reports\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert len(blocks) == 1
    return blocks[0]


def test_readme_reports_example_runs(
    project_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    base = toy_transformer(n_blocks=2, d_model=16, vocab=32)
    save_safetensors(tmp_path / "model_v1.safetensors", base)
    save_safetensors(tmp_path / "model_v2.safetensors", fine_tune(base))
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {}
    exec(compile(_reports_example(project_root), "<README Reports>", "exec"), namespace)
    html = namespace["html"]
    assert isinstance(html, str) and 'data-scheme="dark"' in html and "Fine-tuned" in html
