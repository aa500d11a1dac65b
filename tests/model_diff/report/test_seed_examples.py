"""The seed README's report example runs as written, once per colour scheme (acceptance 3)."""

from __future__ import annotations

import json

import pytest

from tests.test_seed_readme import seed_examples

from .conftest import Diffed


def _report_example() -> str:
    blocks = [b for b in seed_examples() if "VisualizationConfig" in b]
    assert len(blocks) == 1
    return blocks[0]


@pytest.mark.parametrize("scheme", ["default", "dark", "light"])
def test_seed_report_example_runs_with_each_color_scheme(pair: Diffed, scheme: str) -> None:
    block = _report_example()
    assert 'color_scheme="dark"' in block
    namespace: dict[str, object] = {
        "diffs": pair.diffs,
        "summary": pair.summary,
        "analysis": pair.analysis,
    }
    code = block.replace('color_scheme="dark"', f'color_scheme="{scheme}"')
    exec(compile(code, "<seed README report example>", "exec"), namespace)
    html = namespace["html_report"]
    assert isinstance(html, str) and f'data-scheme="{scheme}"' in html
    assert "Base Model" in html and "Fine-tuned" in html
    json.loads(str(namespace["json_report"]))
    assert f"Insights ({len(pair.analysis['insights'])})" in str(namespace["text_report"])
