"""The core commands: ``compare``, ``inspect``, ``demo`` and ``timeline``.

Each builds a config from its flags, calls the engine (``pipeline.compare``, ``describe``,
``timeline``) and writes what it returns; ``model_diff.cli`` registers them on the group.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from .cli_options import (
    color_option,
    format_option,
    open_argument,
    optimizer_option,
    output_option,
    policy_config,
    policy_option,
    progress_callback,
    select_option,
    threshold_option,
    unsafe_option,
    use_color,
    workers_option,
    write_output,
)
from .terminal import printable

if TYPE_CHECKING:
    from .analysis import AnalysisConfig


def run_compare(
    old_spec: str,
    new_spec: str,
    *,
    fmt: str,
    threshold: float,
    include_unchanged: bool,
    top_k: int,
    low_rank: str,
    workers: int | None,
    unsafe_pickle: bool,
    old_name: str | None,
    new_name: str | None,
    color: bool,
    select: str | None = None,
    include_optimizer: bool = False,
    analysis_config: AnalysisConfig | None = None,
) -> str:
    """Load, diff, analyse and render two checkpoints; returns the report text."""
    from .diff import DiffConfig
    from .pipeline import compare

    modes: dict[str, bool | str] = {"auto": "auto", "on": True, "off": False}
    config = DiffConfig(
        change_threshold=threshold,
        include_unchanged=include_unchanged,
        top_k_layers=top_k,
        num_workers=workers,
        low_rank=modes[low_rank],
    )
    old_label, new_label = old_name or old_spec, new_name or new_spec

    def open_side(spec: str) -> Any:
        return open_argument(
            spec,
            unsafe_pickle,
            select=select,
            include_optimizer=include_optimizer,
            state_choice=True,
        )

    with open_side(old_spec) as old, open_side(new_spec) as new:
        result = compare(
            old,
            new,
            config,
            old_label=old_label,
            new_label=new_label,
            progress=progress_callback(),
            analysis_config=analysis_config,
        )
    return result.report(fmt, old_name=old_label, new_name=new_label, color=color)


@click.command()
@click.argument("old")
@click.argument("new")
@format_option()
@output_option
@threshold_option
@click.option("--include-unchanged", is_flag=True, help="List unchanged tensors too.")
@click.option(
    "--top-k",
    type=click.IntRange(min=0),
    default=10,
    show_default=True,
    help="Most-changed tensors listed in the summary.",
)
@click.option(
    "--low-rank",
    type=click.Choice(["auto", "on", "off"]),
    default="auto",
    show_default=True,
    help="Low-rank analysis of 2-D deltas.",
)
@workers_option
@click.option("--old-name", help="Label for OLD in the report (default: the argument).")
@click.option("--new-name", help="Label for NEW in the report (default: the argument).")
@click.option(
    "--open", "open_browser", is_flag=True, help="Open the written report in a browser (with -o)."
)
@color_option
@policy_option
@select_option
@optimizer_option
@unsafe_option
def compare(
    old: str,
    new: str,
    fmt: str,
    output: str | None,
    threshold: float,
    include_unchanged: bool,
    top_k: int,
    low_rank: str,
    workers: int | None,
    old_name: str | None,
    new_name: str | None,
    open_browser: bool,
    color_mode: str,
    policy_file: str | None,
    select: str | None,
    include_optimizer: bool,
    unsafe_pickle: bool,
) -> None:
    """Compare two checkpoints: OLD and NEW are files, HF directories or REV:path.

    Training checkpoints: the model weights are compared; optimizer state, schedulers and
    loose tensors are set aside (stderr says which), see --select and --include-optimizer.
    With --policy the findings are the ones `check --policy` gates on, each with its level."""
    if open_browser and output is None:
        raise click.UsageError("--open needs -o FILE (the report to open)")
    color = use_color(color_mode, fmt, output)
    text = run_compare(
        old,
        new,
        fmt=fmt,
        threshold=threshold,
        include_unchanged=include_unchanged,
        top_k=top_k,
        low_rank=low_rank,
        workers=workers,
        unsafe_pickle=unsafe_pickle,
        old_name=old_name,
        new_name=new_name,
        color=color,
        select=select,
        include_optimizer=include_optimizer,
        analysis_config=policy_config(policy_file),
    )
    write_output(text, output)
    if open_browser and output is not None:
        import webbrowser
        from pathlib import Path

        if not webbrowser.open(Path(output).resolve().as_uri()):
            click.echo(f"report written to {printable(output)}", err=True)


@click.command()
@click.argument("checkpoint")
@format_option(["text", "json"], help="Output format.")
@output_option
@select_option
@optimizer_option
@unsafe_option
def inspect(
    checkpoint: str,
    fmt: str,
    output: str | None,
    select: str | None,
    include_optimizer: bool,
    unsafe_pickle: bool,
) -> None:
    """Describe one checkpoint: format, its parts (model, optimizer state, ...), dtypes, and
    statistics per compared tensor."""
    from .describe import render_inspect

    ckpt = open_argument(
        checkpoint, unsafe_pickle, select=select, include_optimizer=include_optimizer
    )
    try:
        text = render_inspect(ckpt, checkpoint, fmt)
    finally:
        ckpt.close()
    write_output(text, output)


@click.command()
@format_option()
@output_option
@click.option(
    "--keep",
    type=click.Path(file_okay=False),
    help="Write the two demo checkpoints into this directory and keep them.",
)
@color_option
def demo(fmt: str, output: str | None, keep: str | None, color_mode: str) -> None:
    """Build two small checkpoints of a toy transformer and compare them.

    The "fine-tune" keeps the token embeddings frozen and moves later blocks more than earlier
    ones, which the report should show.
    """
    import tempfile
    from pathlib import Path

    from .toy import fine_tune, save_safetensors, toy_transformer

    with tempfile.TemporaryDirectory(prefix="model-diff-demo-") as tmp:
        where = Path(keep) if keep else Path(tmp)
        where.mkdir(parents=True, exist_ok=True)
        base = toy_transformer(n_blocks=6, d_model=64, vocab=512, seed=0)
        save_safetensors(where / "base.safetensors", base)
        save_safetensors(where / "finetuned.safetensors", fine_tune(base, seed=1))
        color = use_color(color_mode, fmt, output)
        text = run_compare(
            str(where / "base.safetensors"),
            str(where / "finetuned.safetensors"),
            fmt=fmt,
            threshold=1e-6,
            include_unchanged=False,
            top_k=10,
            low_rank="auto",
            workers=None,
            unsafe_pickle=False,
            old_name="base.safetensors",
            new_name="finetuned.safetensors",
            color=color,
        )
    if keep:
        click.echo(f"demo checkpoints kept in {printable(keep)}", err=True)
    write_output(text, output)


# --- analysis commands: timeline ---
