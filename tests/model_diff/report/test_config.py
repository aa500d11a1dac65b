"""VisualizationConfig: the original fields and defaults, validated on construction."""

from __future__ import annotations

import pytest

from model_diff.report import COLOR_SCHEMES, VisualizationConfig


def test_defaults_are_the_original_api() -> None:
    """The five original fields keep their documented defaults."""
    c = VisualizationConfig()
    assert (
        c.max_layers_display,
        c.color_scheme,
        c.include_raw_data,
        c.chart_width,
        c.chart_height,
    ) == (50, "default", False, 800, 400)
    assert COLOR_SCHEMES == ("default", "dark", "light")


def test_unknown_color_scheme_raises_naming_the_choices() -> None:
    with pytest.raises(ValueError, match=r"'default', 'dark', 'light'.*'solarized'"):
        VisualizationConfig(color_scheme="solarized")


@pytest.mark.parametrize(
    "field, value",
    [
        ("max_layers_display", 0),
        ("max_layers_display", 2.5),
        ("chart_width", 10),
        ("chart_height", -1),
        ("chart_width", True),
        ("include_raw_data", "yes"),
        ("color", 1),
        ("max_chars", 100),
    ],
)
def test_out_of_range_values_raise_value_error_naming_the_field(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=field):
        VisualizationConfig(**{field: value})  # type: ignore[arg-type]


def test_unknown_format_raises_naming_the_formats() -> None:
    from model_diff.diff import DiffConfig, summarize
    from model_diff.report import create_diff_report

    with pytest.raises(ValueError, match=r"'text', 'json', 'markdown', 'html'.*'xml'"):
        create_diff_report([], summarize([], DiffConfig()), None, format="xml")


def test_render_renders_a_built_view() -> None:
    """render(build_view(...), format) is create_diff_report in two steps."""
    from model_diff.diff import DiffConfig, summarize
    from model_diff.report import build_view, create_diff_report, render

    summary = summarize([], DiffConfig())
    view = build_view([], summary, None, old_name="a", new_name="b")
    for fmt in ("text", "json", "markdown", "html"):
        assert render(view, fmt) == create_diff_report(
            [], summary, None, format=fmt, old_name="a", new_name="b"
        )
