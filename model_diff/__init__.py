"""model-diff: compare two model checkpoints and explain what training changed.

The public API (kept from the original model-diff README) is listed in ``__all__``. Names
are imported lazily so that ``import model_diff`` stays cheap: the git textconv driver runs
once per file per commit and must not pay for jinja2, dulwich or torch.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "load_checkpoint": "formats",
    "open_checkpoint": "formats",
    "Checkpoint": "checkpoint",
    "TensorInfo": "checkpoint",
    "TensorRef": "checkpoint",
    "ModelDiff": "diff",
    "DiffConfig": "diff",
    "ParameterDiff": "diff",
    "DiffSummary": "diff",
    "ChangeType": "diff",
    "compare_checkpoints": "diff",
    "DiffAnalyzer": "analysis",
    "AnalysisConfig": "analysis",
    "Analysis": "analysis",
    "Insight": "findings",
    "compare_training_stages": "timeline",
    "create_diff_report": "report",
    "VisualizationConfig": "report",
    "ModelDiffError": "errors",
    "merge_checkpoints": "merge",
    "MergeResult": "merge",
    "compare3": "threeway",
    "compare3_files": "threeway",
    "ThreeWay": "threeway",
    "render_threeway": "report.threeway",
}

__all__ = [
    "Analysis",
    "AnalysisConfig",
    "ChangeType",
    "Checkpoint",
    "DiffAnalyzer",
    "DiffConfig",
    "DiffSummary",
    "Insight",
    "MergeResult",
    "ModelDiff",
    "ModelDiffError",
    "ParameterDiff",
    "TensorInfo",
    "TensorRef",
    "ThreeWay",
    "VisualizationConfig",
    "__version__",
    "compare3",
    "compare3_files",
    "compare_checkpoints",
    "compare_training_stages",
    "create_diff_report",
    "load_checkpoint",
    "merge_checkpoints",
    "open_checkpoint",
    "render_threeway",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'model_diff' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
