"""Fixed toy checkpoint pairs for the report tests, diffed and analysed by the real engine.

``golden_pair`` exercises every report group: a frozen embedding, a vocabulary resize of
the LM head (shape change), a norm cast to float16 (dtype change), a removed projection, an
added tensor whose name is an HTML/script injection attempt, and a NaN in one MLP weight.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from model_diff import toy
from model_diff.analysis import DiffAnalyzer
from model_diff.checkpoint import Checkpoint, from_arrays
from model_diff.diff import DiffConfig, DiffSummary, ModelDiff, ParameterDiff

XSS_NAME = "</script><script>alert(1)</script>"
XSS_TITLE_NAME = (
    "</script><script>document.title='pwned'</script>"
    "<img src=x onerror=\"document.body.setAttribute('data-pwned','1')\">"
)


def golden_arrays(
    n_blocks: int = 3, d_model: int = 8, vocab: int = 16
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    base = toy.toy_transformer(n_blocks=n_blocks, d_model=d_model, vocab=vocab, seed=0)
    ft = toy.fine_tune(
        base, seed=1, frozen=("model.embed_tokens.weight", "model.layers.0.input_layernorm.weight")
    )
    ft["lm_head.weight"] = np.concatenate(
        [ft["lm_head.weight"], np.full((2, d_model), 0.01, np.float32)]
    )
    ft["model.norm.weight"] = ft["model.norm.weight"].astype(np.float16)
    ft[f"model.layers.{n_blocks - 1}.mlp.up_proj.weight"][0, 0] = np.nan
    del ft["model.layers.1.self_attn.k_proj.weight"]
    ft[XSS_NAME] = np.ones(3, np.float32)
    return base, ft


def golden_checkpoints(**kw: int) -> tuple[Checkpoint, Checkpoint]:
    base, ft = golden_arrays(**kw)
    return (
        from_arrays(base, path="base.safetensors", format="safetensors"),
        from_arrays(ft, path="finetuned.safetensors", format="safetensors"),
    )


def diff_pair(
    old: Checkpoint, new: Checkpoint, **cfg: Any
) -> tuple[list[ParameterDiff], DiffSummary, DiffConfig]:
    config = DiffConfig(include_unchanged=True, num_workers=1, **cfg)
    diffs, summary = ModelDiff(config).diff(old, new)
    return diffs, summary, config


def analyse(
    diffs: list[ParameterDiff],
    summary: DiffSummary,
    old: Checkpoint | None = None,
    new: Checkpoint | None = None,
) -> dict[str, Any]:
    """The real analysis of a pair, as the CLI computes it."""
    return DiffAnalyzer().analyze(diffs, summary, old=old, new=new)


#: The deep pair's blown-up blocks (every tensor x1000), its frozen block and its NaN tensor.
DEEP_BLOWN = range(18, 24)
DEEP_FROZEN_BLOCK = 2
DEEP_NAN = "model.layers.12.mlp.down_proj.weight"


def deep_arrays() -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """A 24-block fine-tune whose upper six blocks blew up (x1000), block 2 frozen and one
    NaN in block 12: what a report must read well at depth."""
    base = toy.toy_transformer(n_blocks=24, d_model=16, vocab=32, seed=0)
    prefix = f"model.layers.{DEEP_FROZEN_BLOCK}."
    ft = toy.fine_tune(base, seed=1, frozen=tuple(n for n in base if n.startswith(prefix)))
    for name in ft:
        if any(name.startswith(f"model.layers.{b}.") for b in DEEP_BLOWN):
            ft[name] = ft[name] * 1000
    ft[DEEP_NAN] = ft[DEEP_NAN].copy()
    ft[DEEP_NAN][0, 0] = np.nan
    return base, ft


def deep_checkpoints() -> tuple[Checkpoint, Checkpoint]:
    base, ft = deep_arrays()
    return (
        from_arrays(base, path="base.safetensors", format="safetensors"),
        from_arrays(ft, path="deep.safetensors", format="safetensors"),
    )
