"""``model-diff timeline``: the command, the run's
checkpoints from the arguments (paths, a folder or glob via ``runs``; or one file's git
history via ``gitdriver.git.Repo.history``), the walk (``timeline.run_timeline``) and the
report (``report.timeline.render_timeline``).

Like ``cli``, this module wires the git package to the engine; the engine below it does not
know git. It returns the report text and raises ``ModelDiffError`` / ``click.UsageError``;
``cli`` writes and exits.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence

import click

from .checkpoint import Checkpoint
from .cli_options import (
    REPORT_FORMATS,
    format_option,
    output_option,
    threshold_option,
    unsafe_option,
    write_output,
)
from .diff import DiffConfig
from .errors import GitError
from .timeline import Source, run_timeline


@click.command()
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
@format_option(REPORT_FORMATS, help="Output format.")
@output_option
@threshold_option
@unsafe_option
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


def build_report(
    args: Sequence[str],
    *,
    git: bool,
    order: str,
    fmt: str,
    threshold: float,
    unsafe_pickle: bool,
) -> str:
    """The timeline report for ``model-diff timeline ARGS`` in ``fmt``."""
    from .report.timeline import render_timeline

    if git:
        sources, how = git_sources(args, unsafe_pickle=unsafe_pickle)
    else:
        sources, how = path_sources(args, order=order, unsafe_pickle=unsafe_pickle)
    if len(sources) < 2:
        raise click.UsageError(
            f"timeline needs at least two checkpoints (in training order), got {len(sources)}"
            + ("" if not git else ": PATH changed in fewer than two commits of the range")
        )
    timeline = run_timeline(
        sources,
        order=how,
        diff_config=DiffConfig(change_threshold=threshold),
        skip_unfetched=git,
    )
    return render_timeline(timeline, fmt)


def _open(spec: str, unsafe_pickle: bool) -> Checkpoint:
    from .gitdriver.spec import open_spec  # a path, or REV:path from git history

    return open_spec(spec, unsafe_pickle=unsafe_pickle)


def path_sources(
    args: Sequence[str], *, order: str, unsafe_pickle: bool
) -> tuple[list[Source], str]:
    """Checkpoint arguments (paths, ``REV:path``, a run folder or a glob) as sources."""
    from .runs import expand

    opener = functools.partial(_open, unsafe_pickle=unsafe_pickle)
    paths, how = expand(args, order=order, opener=opener)
    # A run folder's checkpoints are named by their names in it; anything else as given.
    folder = args[0] if len(args) == 1 and os.path.isdir(args[0]) and paths != [args[0]] else None
    return [
        Source(os.path.relpath(p, folder) if folder else p, functools.partial(opener, p))
        for p in paths
    ], how


def git_sources(args: Sequence[str], *, unsafe_pickle: bool) -> tuple[list[Source], str]:
    """``[REV_RANGE] PATH``: every commit that changed PATH, oldest first. A commit that
    deleted PATH is a gap; so is one whose LFS object is not fetched (``run_timeline``)."""
    from .gitdriver.git import Repo, display_path

    if len(args) not in (1, 2):
        raise click.UsageError("timeline --git takes [REV_RANGE] -- PATH (one path)")
    rev_range, path = (None, args[0]) if len(args) == 1 else (args[0], args[1])
    repo = Repo.discover()
    revisions = repo.history(path, rev_range)
    if not revisions:
        raise GitError(
            f"no commit in {rev_range or 'HEAD'} changed {display_path(path)}",
            hint="check the path (relative to this directory) with `git log --oneline -- PATH`",
        )
    shown = display_path(path)
    sources = [
        Source(
            r.short,
            functools.partial(
                repo.open,
                r.commit,
                r.path,
                display=f"{r.short}:{shown}",
                unsafe_pickle=unsafe_pickle,
            ),
            detail=r.subject,
            missing=None if r.present else f"{r.short}: {shown} deleted in this commit",
        )
        for r in revisions
    ]
    return sources, "git"
