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
from .terminal import COLOR_MODES, color_enabled, guard_lines, printable, printable_lines


def _version_message() -> str:
    from .metrics import version_message

    return version_message()


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
        click.echo(f"model-diff: error: {printable(str(e))}", err=True)
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
        shown = guard_lines(printable(name))  # a tensor name must not drive the terminal
        label = shown if len(shown) <= 50 else "..." + shown[-47:]
        click.echo(f"\r\x1b[2K[{done}/{total}] {label}", err=True, nl=False)
        if end:
            click.echo("", err=True)

    return show


def _open_spec(
    spec: str,
    unsafe_pickle: bool,
    *,
    select: str | None = None,
    include_optimizer: bool = False,
    state_choice: bool = False,
) -> Any:
    """Open a checkpoint argument: a path, or ``REV:path`` read from git history; narrowed to
    ``select`` / with the optimizer state when asked. ``state_choice`` prints which parts of
    the file are compared (stderr) when the file holds more than its weights."""
    from model_diff.gitdriver.git import open_spec

    ckpt = open_spec(spec, unsafe_pickle=unsafe_pickle)
    try:
        ckpt = ckpt.narrowed(select=select, include_optimizer=include_optimizer)
    except BaseException:
        ckpt.close()
        raise
    if state_choice and ckpt.choice is not None:
        click.echo(f"model-diff: {printable(spec)}: {printable(ckpt.choice)}", err=True)
    return ckpt


def write_output(text: str, output: str | None) -> None:
    """Write a report to stdout, or to ``output`` by ``model_diff.output``'s rules (atomic for
    a regular file, in place for a device, FIFO or /dev/stdout, through a symlink)."""
    from .output import write_report

    if output is None or output == "-":
        # color=True: click would strip ANSI off a terminal; the report has colour only when
        # --color (or a terminal under auto) asked for it.
        click.echo(text, nl=not text.endswith("\n"), color=True)
        return
    write_report(output, text)


def _check_output(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """``-o`` is checked while the command line is parsed, before any work: a folder that
    does not exist or cannot be written fails now (exit 2), not after the whole comparison."""
    del ctx, param
    if value is not None and value != "-":
        from .output import check_destination

        check_destination(value)
    return value


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
        return _open_spec(
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
            progress=_progress_callback(),
        )
    return result.report(fmt, old_name=old_label, new_name=new_label, color=color)


_fmt_option = click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    default="text",
    show_default=True,
    help="Report format.",
)
_output_option = click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False),
    callback=_check_output,
    help="Write the report to FILE instead of stdout (a regular file is replaced atomically; "
    "a device, FIFO or /dev/stdout is written in place).",
)
_color_option = click.option(
    "--color",
    "color_mode",
    type=click.Choice(COLOR_MODES),
    default="auto",
    show_default=True,
    help="ANSI colour in the text report: auto = on a terminal unless NO_COLOR is set.",
)


def _use_color(mode: str, fmt: str, output: str | None) -> bool:
    """Colour for a text report: --color always/never decide; auto colours a terminal stdout
    (not a file) unless NO_COLOR is set."""
    if fmt != "text" or mode == "never":
        return False
    return mode == "always" or (output is None and color_enabled(mode, sys.stdout))


_unsafe_option = click.option(
    "--unsafe-pickle",
    is_flag=True,
    help="Load .pt files with torch.load, running code from the file (trusted files only; "
    "needs torch). Without it model-diff reads them itself and runs nothing.",
)
_select_option = click.option(
    "--select",
    metavar="PATH",
    help="Compare only the tensors under this dotted path of the file (one model of several, "
    "an EMA copy, ...); `inspect` lists the paths.",
)
_optimizer_option = click.option(
    "--include-optimizer",
    is_flag=True,
    help="Compare the optimizer state too (tensors paired by parameter order).",
)


@cli.command()
@click.argument("old")
@click.argument("new")
@_fmt_option
@_output_option
@click.option(
    "--threshold",
    type=click.FloatRange(min=0),
    default=1e-6,
    show_default=True,
    help="An element counts as changed when |new-old| exceeds this (change_ratio).",
)
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
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=None,
    help="Worker threads (default: min(4, cores)).",
)
@click.option("--old-name", help="Label for OLD in the report (default: the argument).")
@click.option("--new-name", help="Label for NEW in the report (default: the argument).")
@click.option(
    "--open", "open_browser", is_flag=True, help="Open the written report in a browser (with -o)."
)
@_color_option
@_select_option
@_optimizer_option
@_unsafe_option
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
    select: str | None,
    include_optimizer: bool,
    unsafe_pickle: bool,
) -> None:
    """Compare two checkpoints: OLD and NEW are files, HF directories or REV:path.

    Training checkpoints: the model weights are compared; optimizer state, schedulers and
    loose tensors are set aside (stderr says which), see --select and --include-optimizer."""
    if open_browser and output is None:
        raise click.UsageError("--open needs -o FILE (the report to open)")
    color = _use_color(color_mode, fmt, output)
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
    )
    write_output(text, output)
    if open_browser and output is not None:
        import webbrowser
        from pathlib import Path

        if not webbrowser.open(Path(output).resolve().as_uri()):
            click.echo(f"report written to {printable(output)}", err=True)


@cli.command()
@click.argument("checkpoint")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="Output format.",
)
@_output_option
@_select_option
@_optimizer_option
@_unsafe_option
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

    ckpt = _open_spec(checkpoint, unsafe_pickle, select=select, include_optimizer=include_optimizer)
    try:
        text = render_inspect(ckpt, checkpoint, fmt)
    finally:
        ckpt.close()
    write_output(text, output)


@cli.command()
@_fmt_option
@_output_option
@click.option(
    "--keep",
    type=click.Path(file_okay=False),
    help="Write the two demo checkpoints into this directory and keep them.",
)
@_color_option
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
        color = _use_color(color_mode, fmt, output)
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


@cli.command()
@click.argument("checkpoints", nargs=-1, required=True)
@click.option(
    "--git",
    "git_history",
    is_flag=True,
    help="Follow one file's git history: timeline --git [REV_RANGE] -- PATH (every commit "
    "that changed PATH, oldest first; LFS objects not fetched are gaps).",
)
@click.option(
    "--order",
    type=click.Choice(["auto", "name", "metadata"]),
    default="auto",
    show_default=True,
    help="Order of a folder or glob of checkpoints: the training step in their metadata when "
    "every one has its own (auto), else natural name order (step_900 before step_1000).",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    default="text",
    show_default=True,
    help="Output format.",
)
@_output_option
@click.option(
    "--threshold",
    type=click.FloatRange(min=0),
    default=1e-6,
    show_default=True,
    help="|new-old| above which an element counts as changed.",
)
@click.option(
    "--unsafe-pickle",
    is_flag=True,
    help="Allow full pickle loading of .pt files (runs code from the file).",
)
def timeline(
    checkpoints: tuple[str, ...],
    git_history: bool,
    order: str,
    fmt: str,
    output: str | None,
    threshold: float,
    unsafe_pickle: bool,
) -> None:
    """Show how each block's change evolves over a training run.

    CHECKPOINTS are paths or REV:path in training order, one folder (or quoted glob) of a
    run's checkpoints, or with --git [REV_RANGE] -- PATH one file's git history. Each step
    compares a checkpoint with the one before: pattern, insights, biggest movers, the change
    of every block and layer type, trends and events in words.
    """
    from .cli_timeline import build_report

    write_output(
        build_report(
            checkpoints,
            git=git_history,
            order=order,
            fmt=fmt,
            threshold=threshold,
            unsafe_pickle=unsafe_pickle,
        ),
        output,
    )


# --- git integration: textconv, install, uninstall, status commands ---
_SCOPE_OPTIONS = [
    click.option("--global", "scope", flag_value="global", help="~/.gitconfig + global attributes"),
    click.option("--system", "scope", flag_value="system", help="system gitconfig + attributes"),
    click.option(
        "--local", "scope", flag_value="local", default=True, help="this repository (default)"
    ),
]


def _scoped(f: Any) -> Any:
    for opt in reversed(_SCOPE_OPTIONS):
        f = opt(f)
    return f


@cli.command(context_settings={"ignore_unknown_options": False})
@click.argument("path", type=click.Path(dir_okay=True, path_type=str))
@click.option("--fast", is_flag=True, help="hashes only, no statistics")
@click.option(
    "--format-version",
    type=int,
    default=None,
    hidden=True,
    help="written by install --cachetextconv so git's cache keys change with it",
)
def textconv(path: str, fast: bool, format_version: int | None) -> None:
    """Git textconv driver: one line per tensor (never fails; errors become one line)."""
    from model_diff.gitdriver.textconv import main as textconv_main

    args = [path, *(["--fast"] if fast else [])]
    if format_version is not None:
        args.append(f"--format-version={format_version}")
    sys.exit(textconv_main(args))


@cli.command()
@_scoped
@click.option(
    "--pattern",
    "patterns",
    multiple=True,
    metavar="GLOB",
    help="attribute pattern (repeatable; default: every checkpoint extension, any letter case)",
)
@click.option(
    "--external", is_flag=True, help="also register the external diff command (git diff only)"
)
@click.option(
    "--cachetextconv",
    is_flag=True,
    help="let git cache textconv output in refs/notes/textconv/model-diff",
)
def install(scope: str, patterns: tuple[str, ...], external: bool, cachetextconv: bool) -> None:
    """Register the model-diff git drivers and .gitattributes lines."""
    from model_diff.gitdriver.install import install as do_install

    outcome = do_install(
        scope=scope, patterns=list(patterns) or None, external=external, cachetextconv=cachetextconv
    )
    for change in outcome.changes:
        click.echo(printable(str(change)))
    if not outcome.changes:
        click.echo(f"model-diff: already installed ({scope}); nothing changed")
    for note in outcome.notes:
        click.echo(f"note: {printable(note)}")


@cli.command()
@_scoped
def uninstall(scope: str) -> None:
    """Remove exactly what install added (config keys and attribute lines)."""
    from model_diff.gitdriver.install import uninstall as do_uninstall

    outcome = do_uninstall(scope=scope)
    for change in outcome.changes:
        click.echo(printable(str(change)))
    if not outcome.changes:
        click.echo(f"model-diff: not installed ({scope}); nothing changed")


@cli.command()
@click.option(
    "--pattern",
    "patterns",
    multiple=True,
    metavar="GLOB",
    help="patterns to check (default: the install defaults)",
)
def status(patterns: tuple[str, ...]) -> None:
    """Show driver config, the diff attribute per pattern, LFS, and fresh-clone fallbacks."""
    from model_diff.gitdriver.status import collect, format_status

    text = format_status(collect(patterns=list(patterns) or None))
    click.echo(guard_lines(printable_lines(text)), nl=False)


# --- git revisions, difftool and external diff commands ---


def _emit_driver_output(text: str) -> None:
    """Write a git driver's output; a closed pipe (``git diff | head``) is not an error."""
    import os

    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:
        # Point stdout at /dev/null so the interpreter's final flush cannot fail (exit 120).
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())


class _PathspecCommand(click.Command):
    """A command whose arguments after ``--`` are pathspecs (click itself drops the ``--``)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if "--" in args:
            i = args.index("--")
            ctx.meta["model_diff.pathspecs"] = list(args[i + 1 :])
            args = args[:i]
        return super().parse_args(ctx, args)


@cli.command("diff", cls=_PathspecCommand)
@click.argument(
    "revisions",
    nargs=-1,
    required=True,
    metavar="REV1 [REV2] | REV1..REV2 | REV1...REV2 [-- PATHSPEC...]",
)
@_fmt_option
@_output_option
@_color_option
@click.pass_context
def diff_revisions(
    ctx: click.Context, revisions: tuple[str, ...], fmt: str, output: str | None, color_mode: str
) -> None:
    """Report every checkpoint changed between two revisions (REV2 default: the working tree).

    REV1...REV2 compares REV2 with its merge-base with REV1 (what a pull request changed).

    Added, removed, renamed (with similarity) and modified checkpoint files are listed;
    each modified pair gets the full report. Git LFS objects are read from the local store.
    Exit 2 when a changed file could not be read (the report still lists the others).
    """
    from model_diff.gitdriver.difftool import change_pairs, render_results, run_pairs
    from model_diff.gitdriver.git import Repo

    from .errors import EXIT_USAGE

    repo = Repo.discover()
    sides = repo.diff_sides(revisions, ctx.meta.get("model_diff.pathspecs", []))
    changes = repo.changes(sides.old_id, sides.new_id, sides.pathspecs)
    meta = {
        "base": sides.old,
        "base_commit": sides.old_id,
        "head": sides.new,
        "head_commit": sides.new_id,
    }
    color = _use_color(color_mode, fmt, output)
    results = run_pairs(change_pairs(repo, sides, changes), fmt, repo_root=repo.top, color=color)
    write_output(render_results(results, fmt, title=sides.title, meta=meta), output)
    failed = [r for r in results if r.error and not r.skipped]
    for r in failed:
        click.echo(f"model-diff: error: {printable(r.error or '')}", err=True)
    if failed:
        ctx.exit(EXIT_USAGE)


@cli.command("difftool")
@click.argument("local")
@click.argument("remote")
@click.argument("merged", required=False)
@click.option(
    "--html",
    "as_html",
    is_flag=True,
    help="Write the HTML report (to -o or a temporary file) and open it in a browser.",
)
@_fmt_option
@_output_option
@_color_option
def difftool(
    local: str,
    remote: str,
    merged: str | None,
    as_html: bool,
    fmt: str,
    output: str | None,
    color_mode: str,
) -> None:
    """The full paired report for `git difftool -t model-diff` (LOCAL REMOTE [MERGED]).

    /dev/null sides (added or deleted files) and --dir-diff folder pairs are handled. Errors
    are printed and the exit code stays 0, so git goes on to the next file.
    """
    from model_diff.gitdriver.difftool import (
        difftool_pairs,
        open_in_browser,
        render_results,
        run_pairs,
        write_temp_html,
    )

    fmt = "html" if as_html else fmt
    try:
        pairs = difftool_pairs(local, remote, merged or None)
        color = _use_color(color_mode, fmt, output)
        results = run_pairs(pairs, fmt, color=color)
        label = pairs[0].label if len(pairs) == 1 else "--dir-diff"
        title = "" if len(pairs) == 1 else f"model-diff difftool {label}"
        text = render_results(results, fmt, title=title, unwrap_single=True)
        for r in results:
            if r.error and not r.skipped:
                click.echo(f"model-diff: error: {printable(r.error)}", err=True)
        if fmt == "html" and as_html:
            if output is None:
                path = write_temp_html(text)
            else:
                write_output(text, output)
                path = output
            opened = open_in_browser(path)
            note = "" if opened else " (no browser found: open it yourself)"
            _emit_driver_output(
                f"model-diff: HTML report for {printable(label)}: {printable(path)}{note}\n"
            )
        elif output is not None:
            write_output(text, output)
        else:
            _emit_driver_output(text)
    except ModelDiffError as exc:
        click.echo(f"model-diff: error: {printable(str(exc))}", err=True)


@cli.command("ext-diff", context_settings={"ignore_unknown_options": True})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def ext_diff(args: tuple[str, ...]) -> None:
    """External diff driver for `diff.model-diff.command` (git passes 7 or 9 arguments).

    Prints its own `diff --git` header, then a compact per-tensor diff and the insights.
    Always exits 0: a failing driver would stop `git diff` ("external diff died").
    """
    from model_diff.gitdriver.extdiff import render_ext_diff

    try:
        text = render_ext_diff(list(args))
    except Exception as exc:  # a bug must still not make git fail; say what happened
        text = f"model-diff: internal error (a bug, please report it): {printable(repr(exc))}\n"
    _emit_driver_output(text)


# --- hooks commands ---
_FORMATS = click.Choice(["text", "json", "markdown", "github"])
_FAIL_ON = click.Choice(["error", "warning", "never"])


def _emit_outcome(outcome: Any) -> None:
    """Print a hooks ``Outcome`` and exit with its code (the one place hooks output goes out)."""
    if outcome.stdout:
        click.echo(outcome.stdout, nl=False)
    if outcome.stderr:
        click.echo(outcome.stderr, nl=False, err=True)
    click.get_current_context().exit(outcome.exit_code)


@cli.command("check")
@click.argument("paths", nargs=-1, type=click.Path())
@click.option(
    "--staged",
    is_flag=True,
    help="Check staged checkpoints against HEAD (what the pre-commit hook runs).",
)
@click.option(
    "--policy",
    "policy_file",
    type=click.Path(dir_okay=False),
    help="TOML policy file (default: [tool.model-diff.check] in pyproject.toml).",
)
@click.option("--format", "fmt", type=_FORMATS, default="text", show_default=True)
@click.option(
    "--fail-on",
    type=_FAIL_ON,
    default=None,
    help="Violations that fail the check (default: the policy's fail_on, 'error').",
)
def check_cmd(
    paths: tuple[str, ...], staged: bool, policy_file: str | None, fmt: str, fail_on: str | None
) -> None:
    """Fail on NaN/Inf, frozen layers and instability: OLD NEW, or --staged [PATHS...].

    Exit 0 clean, 1 policy violated, 2 unreadable input or bad policy.
    """
    from model_diff.hooks import commands

    _emit_outcome(
        commands.check(
            list(paths), staged=staged, policy_file=policy_file, fmt=fmt, fail_on=fail_on
        )
    )


@cli.command("health")
@click.argument("paths", nargs=-1, type=click.Path())
@click.option("--format", "fmt", type=_FORMATS, default="text", show_default=True)
def health_cmd(paths: tuple[str, ...], fmt: str) -> None:
    """Single-file checks (readable, not truncated, no NaN/Inf): exit 0, 1 NaN/Inf, 2 unreadable."""
    from model_diff.hooks import commands

    _emit_outcome(commands.health(list(paths), fmt=fmt))


@cli.command("ci")
@click.option("--base", required=True, help="Base revision (e.g. the pull request's base sha).")
@click.option(
    "--head",
    default="HEAD",
    show_default=True,
    help="Head revision; '-' compares the base with the working tree.",
)
@click.option("--paths", multiple=True, help="Glob(s) of checkpoints to check (repeatable).")
@click.option("--policy", "policy_file", type=click.Path(dir_okay=False))
@click.option("--format", "fmt", type=_FORMATS, default="text", show_default=True)
@click.option(
    "--fail-on",
    type=_FAIL_ON,
    default=None,
    help="Violations that fail the job (default: the policy's fail_on, 'error').",
)
@click.option(
    "--report",
    type=click.Path(dir_okay=False),
    callback=_check_output,
    help="Also write the full Markdown report here (written like -o).",
)
def ci_cmd(
    *,
    base: str,
    head: str,
    paths: tuple[str, ...],
    policy_file: str | None,
    fmt: str,
    fail_on: str | None,
    report: str | None,
) -> None:
    """Check every checkpoint changed between --base and --head (GitHub annotations too)."""
    from model_diff.hooks import commands

    _emit_outcome(
        commands.ci(
            base=base,
            head=None if head == "-" else head,
            paths=list(paths),
            policy_file=policy_file,
            fmt=fmt,
            fail_on=fail_on,
            report=report,
        )
    )


# --- three-way commands: merge, compare3, merge-driver, mergetool (their own module) ---
from .cli_merge import compare3, merge, merge_driver, mergetool  # noqa: E402

cli.add_command(merge)
cli.add_command(compare3)
cli.add_command(merge_driver)
cli.add_command(mergetool)
