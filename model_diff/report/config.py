"""``VisualizationConfig``: the options of a report, validated when built.

The five fields of the original API (``max_layers_display``, ``color_scheme``,
``include_raw_data``, ``chart_width``, ``chart_height``) each change what a report shows;
``color`` (ANSI colour in the text report) and ``max_chars`` (size bound of the Markdown
report) are additions. This module only holds options: it renders nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

COLOR_SCHEMES = ("default", "dark", "light")

#: GitHub caps a PR comment at 65,536 characters and a job summary at 1 MiB; the default
#: leaves room for a comment's own header around the report.
DEFAULT_MAX_CHARS = 60_000
_MIN_MAX_CHARS = 2_000
_MIN_CHART = 200
_MAX_CHART = 4_000


@dataclass(frozen=True)
class VisualizationConfig:
    """How a report looks. Invalid values raise ``ValueError`` naming the accepted ones."""

    #: Most tensors listed in a report's tensor table (the most changed ones are kept).
    max_layers_display: int = 50
    #: HTML colour scheme: "default", "dark" or "light".
    color_scheme: str = "default"
    #: Embed every per-tensor record (all metrics and statistics) in the HTML report.
    include_raw_data: bool = False
    #: Size of each HTML chart, in CSS pixels.
    chart_width: int = 800
    chart_height: int = 400
    #: ANSI colour in the text report (the CLI passes ``stdout.isatty()``).
    color: bool = False
    #: Upper bound on the Markdown report's length; the tensor table is cut to fit.
    max_chars: int = DEFAULT_MAX_CHARS

    def __post_init__(self) -> None:
        if self.color_scheme not in COLOR_SCHEMES:
            raise ValueError(
                f"color_scheme must be one of {', '.join(map(repr, COLOR_SCHEMES))}, "
                f"not {self.color_scheme!r}"
            )
        _check_int("max_layers_display", self.max_layers_display, 1, None)
        _check_int("chart_width", self.chart_width, _MIN_CHART, _MAX_CHART)
        _check_int("chart_height", self.chart_height, _MIN_CHART // 2, _MAX_CHART)
        _check_int("max_chars", self.max_chars, _MIN_MAX_CHARS, None)
        for name in ("include_raw_data", "color"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be True or False, not {getattr(self, name)!r}")

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def _check_int(name: str, value: object, low: int, high: int | None) -> None:
    ok = isinstance(value, int) and not isinstance(value, bool) and value >= low
    if ok and high is not None:
        ok = value <= high  # type: ignore[operator]
    if not ok:
        bound = f"between {low} and {high}" if high is not None else f">= {low}"
        raise ValueError(f"{name} must be an integer {bound}, not {value!r}")
