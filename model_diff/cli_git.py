"""The git commands: ``textconv``, ``install``, ``uninstall``, ``status``, ``diff``,
``difftool`` and ``ext-diff``.

Thin: each calls ``model_diff.gitdriver`` (which holds every git question and answer) and
prints what it returns. The drivers git runs (textconv, difftool, ext-diff) exit 0 whatever
happens, so git goes on to the next file; ``model_diff.cli`` registers them on the group.
"""

from __future__ import annotations

import sys

import click

from .cli_options import (
    PathspecCommand,
    color_option,
    emit_driver_output,
    format_option,
    output_option,
    policy_config,
    policy_option,
    scope_options,
    use_color,
    write_output,
)
from .errors import EXIT_USAGE, ModelDiffError
from .terminal import guard_lines, printable, printable_lines


@click.command(context_settings={"ignore_unknown_options": False})
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


@click.command()
@scope_options
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


@click.command()
@scope_options
def uninstall(scope: str) -> None:
    """Remove exactly what install added (config keys and attribute lines)."""
    from model_diff.gitdriver.install import uninstall as do_uninstall

    outcome = do_uninstall(scope=scope)
    for change in outcome.changes:
        click.echo(printable(str(change)))
    if not outcome.changes:
        click.echo(f"model-diff: not installed ({scope}); nothing changed")


@click.command()
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


@click.command("diff", cls=PathspecCommand)
@click.argument(
    "revisions",
    nargs=-1,
    required=True,
    metavar="REV1 [REV2] | REV1..REV2 | REV1...REV2 [-- PATHSPEC...]",
)
@format_option()
@output_option
@color_option
@policy_option
@click.pass_context
def diff_revisions(
    ctx: click.Context,
    revisions: tuple[str, ...],
    fmt: str,
    output: str | None,
    color_mode: str,
    policy_file: str | None,
) -> None:
    """Report every checkpoint changed between two revisions (REV2 default: the working tree).

    REV1...REV2 compares REV2 with its merge-base with REV1 (what a pull request changed).

    Added, removed, renamed (with similarity) and modified checkpoint files are listed;
    each modified pair gets the full report. Git LFS objects are read from the local store.
    Exit 2 when a changed file could not be read (the report still lists the others).
    """
    from model_diff.gitdriver.difftool import diff_revisions as run_diff

    color = use_color(color_mode, fmt, output)
    text, results = run_diff(
        revisions,
        ctx.meta.get("model_diff.pathspecs", []),
        fmt,
        color=color,
        analysis_config=policy_config(policy_file),
    )
    write_output(text, output)
    failed = [r for r in results if r.error and not r.skipped]
    for r in failed:
        click.echo(f"model-diff: error: {printable(r.error or '')}", err=True)
    if failed:
        ctx.exit(EXIT_USAGE)


@click.command("difftool")
@click.argument("local")
@click.argument("remote")
@click.argument("merged", required=False)
@click.option(
    "--html",
    "as_html",
    is_flag=True,
    help="Write the HTML report (to -o or a temporary file) and open it in a browser.",
)
@format_option()
@output_option
@color_option
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
        color = use_color(color_mode, fmt, output)
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
            emit_driver_output(
                f"model-diff: HTML report for {printable(label)}: {printable(path)}{note}\n"
            )
        elif output is not None:
            write_output(text, output)
        else:
            emit_driver_output(text)
    except ModelDiffError as exc:
        click.echo(f"model-diff: error: {printable(str(exc))}", err=True)


@click.command("ext-diff", context_settings={"ignore_unknown_options": True})
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
    emit_driver_output(text)
