"""Golden files pin the text, Markdown and JSON reports; every format is byte-deterministic.

Regenerate after an intended change with ``MODEL_DIFF_UPDATE_GOLDEN=1 python -m pytest
tests/model_diff/report/test_golden.py`` and review the diff of ``golden/`` before committing.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from model_diff.report import VisualizationConfig, create_diff_report

from .conftest import Diffed

GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("MODEL_DIFF_UPDATE_GOLDEN") == "1"
SUFFIX = {"text": "txt", "markdown": "md", "json": "json"}


#: A JSON float literal outside strings (not preceded or followed by a word char, dot or quote).
_FLOAT = re.compile(r'(?<![\w."-])-?\d+(?:\.\d+(?:[eE][-+]?\d+)?|[eE][-+]?\d+)(?![\w."])')


def _normalise(fmt: str, text: str) -> str:
    """JSON floats rounded to 9 significant digits, the layout kept byte for byte.

    The metric backends (compiled kernel, numpy) may differ in the last bits of a float64
    sum; the golden file pins everything else, including one line per tensor record.
    """
    if fmt != "json":
        return text
    json.loads(text)  # still valid JSON before any rewriting
    return _FLOAT.sub(lambda m: repr(float(f"{float(m.group()):.9g}")), text)


@pytest.mark.parametrize("fmt", ["text", "markdown", "json"])
def test_report_matches_golden_file(pair: Diffed, fmt: str) -> None:
    out = create_diff_report(
        pair.diffs,
        pair.summary,
        pair.analysis,
        format=fmt,
        **pair.kwargs(config=VisualizationConfig(max_layers_display=12)),
    )
    path = GOLDEN / f"report.{SUFFIX[fmt]}"
    actual = _normalise(fmt, out)
    if UPDATE:
        path.write_text(actual, encoding="utf-8")
    assert path.exists(), f"missing {path}: run with MODEL_DIFF_UPDATE_GOLDEN=1"
    assert actual == path.read_text(encoding="utf-8")


_SCRIPT = """
import hashlib
import sys
from model_diff.report import VisualizationConfig, create_diff_report, inputs_from_checkpoints
from tests.model_diff.report.pairs import analyse, diff_pair, golden_checkpoints
old, new = golden_checkpoints()
diffs, summary, cfg = diff_pair(old, new)
analysis = analyse(diffs, summary, old, new)
create_diff_report(diffs, summary, analysis, format="text")
print("jinja2 imported by text:", "jinja2" in sys.modules)
for fmt in ("text", "json", "markdown", "html"):
    out = create_diff_report(diffs, summary, analysis, format=fmt, old_name="a", new_name="b",
                             config=VisualizationConfig(include_raw_data=True),
                             inputs=inputs_from_checkpoints(old, new), diff_config=cfg)
    print(fmt, hashlib.sha256(out.encode()).hexdigest())
"""


def test_all_formats_byte_identical_across_runs_and_hash_seeds(
    clean_env: dict[str, str], project_root: Path
) -> None:
    digests = []
    for seed in ("0", "4242"):
        env = dict(clean_env, PYTHONHASHSEED=seed)
        proc = subprocess.run(
            [sys.executable, "-c", _SCRIPT],
            env=env,
            cwd=project_root,
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
        assert proc.returncode == 0, proc.stderr
        digests.append(proc.stdout)
    assert digests[0] == digests[1]
    lines = digests[0].splitlines()
    assert lines[0] == "jinja2 imported by text: False"  # the terminal path stays light
    assert len(lines) == 5


def test_same_call_twice_same_bytes(pair: Diffed) -> None:
    for fmt in ("text", "json", "markdown", "html"):
        a = create_diff_report(pair.diffs, pair.summary, pair.analysis, format=fmt)
        b = create_diff_report(list(pair.diffs), pair.summary, dict(pair.analysis), format=fmt)
        assert hashlib.sha256(a.encode()).digest() == hashlib.sha256(b.encode()).digest()
