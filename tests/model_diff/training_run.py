"""A small training run for the timeline tests, saved the way trainers save one.

The toy transformer (``model_diff.toy``) is moved step by step with a learning-rate schedule
that spikes a hundredfold at step 3 (the checkpoint after it moved ~100x more than the
others) and falls back; at step 5 the upper blocks' MLP weights hold NaN (the divergence
such a spike leads to). The embedding stays frozen throughout. Checkpoints are
``step_<global step>.safetensors`` with ``global_step`` in their metadata; the global steps
(0, 200, ..., 1000) sort wrongly as text (``step_1000`` before ``step_200``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from model_diff.toy import fine_tune, save_safetensors, toy_transformer

GLOBAL_STEPS = (0, 200, 400, 600, 800, 1000)
#: learning rate of each step (step k moves checkpoint k-1 to checkpoint k)
LEARNING_RATES = (1e-3, 1e-3, 1e-1, 1e-3, 1e-3)
SPIKE_STEP = 3
NAN_STEP = 5
NAN_BLOCKS = (3, 4, 5)
N_BLOCKS = 6


def training_states() -> list[dict[str, np.ndarray]]:
    """The six checkpoints' weights, in training order."""
    states = [toy_transformer(n_blocks=N_BLOCKS, d_model=16, vocab=32, seed=0)]
    for step, lr in enumerate(LEARNING_RATES, start=1):
        nxt = fine_tune(states[-1], seed=step, scale=lr)
        if step == NAN_STEP:
            for name in nxt:
                block = name.split(".")[2] if name.startswith("model.layers.") else None
                if block is not None and int(block) in NAN_BLOCKS and ".mlp." in name:
                    nxt[name] = nxt[name].copy()
                    nxt[name].flat[::7] = np.nan
        states.append(nxt)
    return states


def file_name(global_step: int) -> str:
    return f"step_{global_step}.safetensors"


def save_run(folder: Path, states: list[dict[str, np.ndarray]] | None = None) -> list[Path]:
    """Write the run into ``folder`` (created); the paths in training order."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for gs, state in zip(GLOBAL_STEPS, states or training_states(), strict=True):
        path = folder / file_name(gs)
        save_safetensors(path, state, {"format": "pt", "global_step": str(gs)})
        paths.append(path)
    return paths
