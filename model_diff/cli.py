"""The ``model-diff`` command line: the one module that prints, reads flags and exits.

Commands are thin: they build a config, call the engine (or gitdriver / hooks), render and
write. Expected errors (``ModelDiffError``) become one line on stderr and their exit code;
anything else is a bug (exit 3). See ``model_diff.errors`` for the exit codes.
"""

from __future__ import annotations

import sys
import traceback
from typing import Any

import click

from . import __version__
from .errors import EXIT_INTERNAL, EXIT_INTERRUPTED, ModelDiffError


def _version_message() -> str:
    from . import metrics

    return f"model-diff {__version__} (metrics backend: {metrics.BACKEND})"


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, message=_version_message())
def cli() -> None:
    """Compare model checkpoints and explain what training changed."""


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: run the click group with one top-level error handler."""
    try:
        rv: Any = cli.main(args=argv, prog_name="model-diff", standalone_mode=False)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except click.Abort:
        click.echo("Aborted!", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except ModelDiffError as e:
        click.echo(f"model-diff: error: {e}", err=True)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        sys.exit(EXIT_INTERRUPTED)
    except BrokenPipeError:
        sys.exit(0)
    except Exception:
        traceback.print_exc()
        click.echo(
            "model-diff: internal error (a bug): please report it with the traceback above",
            err=True,
        )
        sys.exit(EXIT_INTERNAL)
    sys.exit(rv if isinstance(rv, int) else 0)



# --- core commands: compare, inspect, demo ---

FORMATS = ("text", "json", "markdown", "html")


def _progress_callback() -> Any:
    """A progress line on stderr when stderr is a terminal; None otherwise (CI, pipes, git)."""
    if not sys.stderr.isatty():
        return None

    def show(done: int, total: int, name: str) -> None:
        end = "\n" if done == total else ""
        label = name if len(name) <= 50 else "..." + name[-47:]
        click.echo(f"\r\x1b[2K[{done}/{total}] {label}", err=True, nl=False)
        if end:
            click.echo("", err=True)

    return show


def _open_spec(spec: str, unsafe_pickle: bool) -> Any:
    """Open a checkpoint argument: a path, or ``REV:path`` read from git history."""
    import os

    from .formats import open_checkpoint

    if not os.path.exists(spec) and ":" in spec:
        from gitdriver.revisions import open_spec

        return open_spec(spec, unsafe_pickle=unsafe_pickle)
    return open_checkpoint(spec, unsafe_pickle=unsafe_pickle)


def write_output(text: str, output: str | None) -> None:
    """Write to stdout, or to ``output`` atomically (a partial file is never left behind)."""
    import os
    import tempfile

    if output is None or output == "-":
        click.echo(text, nl=not text.endswith("\n"))
        return
    directory = os.path.dirname(os.path.abspath(output))
    if not os.path.isdir(directory):
        raise ModelDiffError("output directory does not exist", path=directory,
                             hint="create it or choose another -o path")
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".model-diff-", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
        os.replace(tmp, output)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def run_compare(
    old_spec: str, new_spec: str, *, fmt: str, threshold: float, include_unchanged: bool,
    top_k: int, low_rank: str, workers: int | None, unsafe_pickle: bool,
    old_name: str | None, new_name: str | None, color: bool,
) -> str:
    """Load, diff, analyse and render two checkpoints; returns the report text."""
    from .analysis import DiffAnalyzer
    from .diff import DiffConfig, ModelDiff
    from .report import create_diff_report

    modes: dict[str, bool | str] = {"auto": "auto", "on": True, "off": False}
    lr = modes[low_rank]
    config = DiffConfig(change_threshold=threshold, include_unchanged=True, top_k_layers=top_k,
                        num_workers=workers, low_rank=lr)
    old = _open_spec(old_spec, unsafe_pickle)
    try:
        new = _open_spec(new_spec, unsafe_pickle)
        try:
            diffs, summary = ModelDiff(config).diff(old, new, progress=_progress_callback())
            analysis = DiffAnalyzer().analyze(diffs, summary)
            inputs = {"old": _describe(old, old_name or old_spec),
                      "new": _describe(new, new_name or new_spec)}
        finally:
            new.close()
    finally:
        old.close()
    shown = diffs if include_unchanged else [d for d in diffs if d.is_changed]
    report_config = DiffConfig(change_threshold=threshold, include_unchanged=include_unchanged,
                               top_k_layers=top_k, num_workers=workers, low_rank=lr)
    return create_diff_report(
        shown, summary, analysis, format=fmt, old_name=old_name or old_spec,
        new_name=new_name or new_spec, inputs=inputs, diff_config=report_config, color=color,
    )


def _describe(ckpt: Any, spec: str) -> dict[str, Any]:
    return {"path": spec, "format": ckpt.format, "tensors": len(ckpt),
            "parameters": ckpt.num_parameters, "dtypes": ckpt.dtypes}


_fmt_option = click.option("--format", "fmt", type=click.Choice(FORMATS), default="text",
                           show_default=True, help="Report format.")
_output_option = click.option("-o", "--output", type=click.Path(dir_okay=False),
                              help="Write the report to FILE instead of stdout.")
_unsafe_option = click.option(
    "--unsafe-pickle", is_flag=True,
    help="Allow full pickle loading of .pt files (runs code from the file: trusted files only).")


@cli.command()
@click.argument("old")
@click.argument("new")
@_fmt_option
@_output_option
@click.option("--threshold", type=click.FloatRange(min=0), default=1e-6, show_default=True,
              help="An element counts as changed when |new-old| exceeds this (change_ratio).")
@click.option("--include-unchanged", is_flag=True, help="List unchanged tensors too.")
@click.option("--top-k", type=click.IntRange(min=0), default=10, show_default=True,
              help="Most-changed tensors listed in the summary.")
@click.option("--low-rank", type=click.Choice(["auto", "on", "off"]), default="auto",
              show_default=True, help="Low-rank analysis of 2-D deltas.")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Worker threads (default: min(4, cores)).")
@click.option("--old-name", help="Label for OLD in the report (default: the argument).")
@click.option("--new-name", help="Label for NEW in the report (default: the argument).")
@click.option("--open", "open_browser", is_flag=True,
              help="Open the written report in a browser (with -o).")
@_unsafe_option
def compare(old: str, new: str, fmt: str, output: str | None, threshold: float,
            include_unchanged: bool, top_k: int, low_rank: str, workers: int | None,
            old_name: str | None, new_name: str | None, open_browser: bool,
            unsafe_pickle: bool) -> None:
    """Compare two checkpoints: OLD and NEW are files, HF directories or REV:path."""
    color = output is None and fmt == "text" and sys.stdout.isatty()
    text = run_compare(old, new, fmt=fmt, threshold=threshold,
                       include_unchanged=include_unchanged, top_k=top_k, low_rank=low_rank,
                       workers=workers, unsafe_pickle=unsafe_pickle, old_name=old_name,
                       new_name=new_name, color=color)
    write_output(text, output)
    if open_browser:
        if output is None:
            raise click.UsageError("--open needs -o FILE")
        import webbrowser
        from pathlib import Path

        if not webbrowser.open(Path(output).resolve().as_uri()):
            click.echo(f"report written to {output}", err=True)


@cli.command()
@click.argument("checkpoint")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text",
              show_default=True, help="Output format.")
@_output_option
@_unsafe_option
def inspect(checkpoint: str, fmt: str, output: str | None, unsafe_pickle: bool) -> None:
    """Describe one checkpoint: format, dtypes, and statistics per tensor."""
    from .describe import render_inspect

    ckpt = _open_spec(checkpoint, unsafe_pickle)
    try:
        text = render_inspect(ckpt, checkpoint, fmt)
    finally:
        ckpt.close()
    write_output(text, output)


@cli.command()
@_fmt_option
@_output_option
@click.option("--keep", type=click.Path(file_okay=False),
              help="Write the two demo checkpoints into this directory and keep them.")
def demo(fmt: str, output: str | None, keep: str | None) -> None:
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
        color = output is None and fmt == "text" and sys.stdout.isatty()
        text = run_compare(
            str(where / "base.safetensors"), str(where / "finetuned.safetensors"), fmt=fmt,
            threshold=1e-6, include_unchanged=False, top_k=10, low_rank="auto", workers=None,
            unsafe_pickle=False, old_name="base.safetensors",
            new_name="finetuned.safetensors", color=color,
        )
    if keep:
        click.echo(f"demo checkpoints kept in {keep}", err=True)
    write_output(text, output)


# --- analysis commands: timeline ---


@cli.command()
@click.argument("checkpoints", nargs=-1, required=True)
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text",
              show_default=True, help="Output format.")
@_output_option
@click.option("--threshold", type=click.FloatRange(min=0), default=1e-6, show_default=True,
              help="|new-old| above which an element counts as changed.")
@click.option("--unsafe-pickle", is_flag=True,
              help="Allow full pickle loading of .pt files (runs code from the file).")
def timeline(checkpoints: tuple[str, ...], fmt: str, output: str | None, threshold: float,
             unsafe_pickle: bool) -> None:
    """Show how each block's change evolves over CHECKPOINTS (in training order).

    Each consecutive pair is diffed and analysed; the table gives every block's aggregate
    relative change per step, its trend, and each step's pattern and insight codes.
    """
    from .diff import DiffConfig
    from .timeline import compare_training_stages, render_timeline_json, render_timeline_text

    if len(checkpoints) < 2:
        raise click.UsageError("timeline needs at least two checkpoints (in training order)")
    result = compare_training_stages(
        list(checkpoints), diff_config=DiffConfig(change_threshold=threshold),
        opener=lambda spec: _open_spec(str(spec), unsafe_pickle),
    )
    render = render_timeline_json if fmt == "json" else render_timeline_text
    write_output(render(result), output)
