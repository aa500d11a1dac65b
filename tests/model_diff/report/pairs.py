"""Fixed toy checkpoint pairs for the report tests, and an analysis dict in the documented shape.

``golden_pair`` exercises every report group: a frozen embedding, a vocabulary resize of
the LM head (shape change), a norm cast to float16 (dtype change), a removed projection, an
added tensor whose name is an HTML/script injection attempt, and a NaN in one MLP weight.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from model_diff import toy
from model_diff.checkpoint import Checkpoint, from_arrays
from model_diff.diff import DiffConfig, DiffSummary, ModelDiff, ParameterDiff

XSS_NAME = "</script><script>alert(1)</script>"
XSS_TITLE_NAME = ("</script><script>document.title='pwned'</script>"
                  "<img src=x onerror=\"document.body.setAttribute('data-pwned','1')\">")


def golden_arrays(n_blocks: int = 3, d_model: int = 8, vocab: int = 16
                  ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    base = toy.toy_transformer(n_blocks=n_blocks, d_model=d_model, vocab=vocab, seed=0)
    ft = toy.fine_tune(base, seed=1, frozen=("model.embed_tokens.weight",
                                             "model.layers.0.input_layernorm.weight"))
    ft["lm_head.weight"] = np.concatenate(
        [ft["lm_head.weight"], np.full((2, d_model), 0.01, np.float32)])
    ft["model.norm.weight"] = ft["model.norm.weight"].astype(np.float16)
    ft[f"model.layers.{n_blocks - 1}.mlp.up_proj.weight"][0, 0] = np.nan
    del ft["model.layers.1.self_attn.k_proj.weight"]
    ft[XSS_NAME] = np.ones(3, np.float32)
    return base, ft


def golden_checkpoints(**kw: int) -> tuple[Checkpoint, Checkpoint]:
    base, ft = golden_arrays(**kw)
    return (from_arrays(base, path="base.safetensors", format="safetensors"),
            from_arrays(ft, path="finetuned.safetensors", format="safetensors"))


def diff_pair(old: Checkpoint, new: Checkpoint, **cfg: Any
              ) -> tuple[list[ParameterDiff], DiffSummary, DiffConfig]:
    config = DiffConfig(include_unchanged=True, num_workers=1, **cfg)
    diffs, summary = ModelDiff(config).diff(old, new)
    return diffs, summary, config


_TYPES = (("embedding", "embed"), ("attention", "attn"), ("mlp", "mlp"), ("norm", "norm"),
          ("head", "lm_head"))


def layer_type(name: str) -> str:
    return next((t for t, key in _TYPES if key in name), "other")


def documented_analysis(diffs: list[ParameterDiff]) -> dict[str, Any]:
    """An analysis dict in the shape docs/INTERNALS.md documents, computed plainly from diffs."""
    layer: dict[str, dict[str, Any]] = {}
    depth: dict[tuple[int, str], list[float]] = {}
    for d in diffs:
        t = layer_type(d.name)
        row = layer.setdefault(t, {"count": 0, "changed": 0, "frozen": 0, "rel": [], "cos": [],
                                   "num_elements": 0})
        row["count"] += 1
        row["num_elements"] += d.num_elements
        row["frozen" if not d.is_changed else "changed"] += 1
        if d.relative_change is not None:
            row["rel"].append(d.relative_change)
        if d.cosine_sim is not None:
            row["cos"].append(d.cosine_sim)
        m = re.search(r"layers\.(\d+)\.", d.name)
        if m and d.relative_change is not None:
            depth.setdefault((int(m.group(1)), t), []).append(d.relative_change)
    layer_analysis = {
        t: {"count": r["count"], "changed": r["changed"], "frozen": r["frozen"],
            "avg_change": float(np.mean(r["rel"])) if r["rel"] else 0.0,
            "max_change": float(np.max(r["rel"])) if r["rel"] else 0.0,
            "avg_cosine": float(np.mean(r["cos"])) if r["cos"] else None,
            "num_elements": r["num_elements"]}
        for t, r in layer.items()
    }
    profile = [{"block": b, "layer_type": t, "avg_change": float(np.mean(v)), "count": len(v)}
               for (b, t), v in sorted(depth.items())]
    frozen = [d.name for d in diffs if not d.is_changed]
    nonfinite = [d.name for d in diffs if d.nonfinite_new]
    insights: list[dict[str, Any]] = []
    if nonfinite:
        insights.append({"code": "nonfinite-values", "severity": "critical",
                         "category": "stability", "title": "NaN/Inf values appeared",
                         "description": f"{len(nonfinite)} tensor(s) hold NaN or Inf values "
                                        "in the new checkpoint.",
                         "evidence": {"tensors": nonfinite, "count": len(nonfinite)}})
    shape = [d.name for d in diffs if d.change_type.value == "shape_changed"]
    if shape:
        insights.append({"code": "shape-changed", "severity": "warning",
                         "category": "architecture", "title": "Tensor shapes changed",
                         "description": "Shapes differ (a vocabulary resize?).",
                         "evidence": {"tensors": shape}})
    if frozen:
        insights.append({"code": "frozen-layers", "severity": "info", "category": "training",
                         "title": "Frozen tensors",
                         "description": f"{len(frozen)} tensor(s) are bit-identical | *not* "
                                        "trained <b>at all</b>.",
                         "evidence": {"tensors": frozen, "count": len(frozen)}})
    return {"change_pattern": "inverse_gradient", "layer_analysis": layer_analysis,
            "depth_profile": profile, "insights": insights, "frozen_layers": frozen,
            "low_rank": {}, "stats": {"tensors": len(diffs)}}
