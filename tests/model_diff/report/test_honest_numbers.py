"""Numbers that never pretend: an average over nothing is null / "n/a", never 0 or 1.

Issue 13 acceptance 5: a pair that diverged to NaN in every trained tensor shows no "0%" and
no "1.000000" in text, JSON, Markdown or HTML, and says so first; a pair whose tensors are
all added/removed and a layer type whose only tensor was added show n/a.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from model_diff import toy
from model_diff.checkpoint import from_arrays
from model_diff.pipeline import compare

FORMATS = ("text", "json", "markdown", "html")
#: A zero percentage as a number ("0%", "0.0%"), not the end of "50%" or "100%".
ZERO_PCT = re.compile(r"(?<![\d.])0(?:\.0+)?%")


def _reports(old: dict[str, np.ndarray], new: dict[str, np.ndarray]) -> dict[str, str]:
    result = compare(
        from_arrays(old, path="old.safetensors"), from_arrays(new, path="new.safetensors")
    )
    return {f: result.report(f, old_name="old", new_name="new") for f in FORMATS}


def _diverged() -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    base = toy.toy_transformer(n_blocks=2, d_model=8, vocab=16)
    # Buffers that stay as they are while the weights blow up: not trained, never averaged.
    base["model.position_ids"] = np.arange(16, dtype=np.int64)
    base["model.layers.0.self_attn.rotary_emb.inv_freq"] = np.linspace(1, 0.01, 4, np.float32)
    new = {
        k: v.copy() if k in ("model.position_ids", "model.layers.0.self_attn.rotary_emb.inv_freq")
        else np.full_like(v, np.nan)
        for k, v in base.items()
    }  # fmt: skip
    return base, new


def test_a_diverged_pair_shows_no_zero_percent_and_no_perfect_cosine() -> None:
    """Every trained tensor NaN: no 0% and no 1.000000 anywhere, in any format."""
    reports = _reports(*_diverged())
    for fmt, text in reports.items():
        assert not ZERO_PCT.search(text), (fmt, ZERO_PCT.search(text))
        assert "1.000000" not in text, fmt
    doc = json.loads(reports["json"])
    s = doc["summary"]
    assert s["avg_relative_change"] is None and s["max_relative_change"] is None
    assert s["avg_cosine_similarity"] is None and s["min_cosine_similarity"] is None
    assert s["averaged_tensors"] == 0
    assert s["excluded"] == {"buffers": 2, "nonfinite": 21}
    for stats in doc["analysis"]["layer_analysis"].values():
        assert stats["avg_change"] is None and stats["max_change"] is None
    assert doc["analysis"]["depth_profile"] and all(
        p["avg_change"] is None for p in doc["analysis"]["depth_profile"]
    )


def test_a_diverged_pair_says_so_in_the_summarys_first_lines() -> None:
    """The Summary opens with the NaN/Inf count and states the averages' base."""
    reports = _reports(*_diverged())
    summary = reports["text"].split("\nSummary\n", 1)[1]
    assert summary.startswith("  NaN/Inf in 21 of 23 tensors of the new checkpoint")
    flat = " ".join(summary.split())
    assert "relative change avg n/a max n/a" in flat
    assert "averages over 0 of 23 tensors; 2 buffer(s), 21 all-NaN/Inf excluded" in flat
    md = reports["markdown"]
    assert md.index("**:x: NaN/Inf in 21 of 23 tensors") < md.index("tensors changed**")
    assert '<p class="alert">NaN/Inf in 21 of 23 tensors' in reports["html"]


def test_all_added_and_removed_shows_n_a_not_zero() -> None:
    """A float release against an int8 one under other names: nothing paired, nothing
    averaged: n/a (a float vs int8 release in the issue)."""
    base = toy.toy_transformer(n_blocks=1, d_model=8, vocab=16)
    # upper-case names: no name rule (separator, prefix) and no equal bytes pair them
    other = {k.upper(): (v * 100).astype(np.int8) for k, v in base.items()}
    reports = _reports(base, other)
    for fmt, text in reports.items():
        assert not ZERO_PCT.search(text), fmt
        assert "1.000000" not in text, fmt
    assert "relative change  avg n/a   max n/a" in reports["text"]
    assert "cosine           avg n/a   min n/a" in reports["text"]


@pytest.mark.parametrize("fmt", ["text", "markdown"])
def test_a_layer_type_whose_only_tensor_was_added_shows_n_a(fmt: str) -> None:
    """Layer type 'other' holds one tensor, added: its average change is n/a, not 0%."""
    base = toy.toy_transformer(n_blocks=1, d_model=8, vocab=16)
    new = toy.fine_tune(base)
    new["adapter.extra"] = np.ones(4, np.float32)
    text = _reports(base, new)[fmt]
    row = next(line for line in text.splitlines() if re.match(r"^\|? ?\s*other\b", line))
    cells = [c for c in re.split(r"[|\s]+", row) if c]
    assert cells[:4] == ["other", "1", "1", "0"] and cells[4:6] == ["n/a", "n/a"], row
