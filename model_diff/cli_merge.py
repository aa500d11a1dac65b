"""The three-way commands (registered on the ``model-diff`` group by ``cli``): ``merge``,
``compare3``, and git's ``merge-driver`` and ``mergetool``.

``merge BASE OURS THEIRS -o OUT`` runs ``merge.merge_checkpoints``: exit 0 when the merged
checkpoint was written, 1 when conflicts remain (listed on stderr; nothing written), 2 for
unreadable or unwritable input. ``compare3 BASE OURS THEIRS`` renders the three-way report.
Both take paths or ``REV:path`` (opened by ``gitdriver.spec.open_spec``, like ``compare``).
``merge-driver`` and ``mergetool`` are what ``model-diff install`` registers with git
(``model_diff.gitdriver.mergedriver``). Like ``cli``, this module prints and exits; the
engine below it does neither.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING

import click

from .cli_options import format_option, output_option, workers_option, write_output
from .errors import EXIT_CHECK_FAILED, ModelDiffError
from .merge import ARITHMETIC, DEFAULT_TIES_K, STRATEGIES, MergeResult
from .terminal import printable

if TYPE_CHECKING:
    from .checkpoint import Checkpoint
    from .threeway import ThreeWay


@contextlib.contextmanager
def _opened(*specs: str) -> Iterator[list[Checkpoint]]:
    """Checkpoint arguments opened (paths, or ``REV:path`` from git history), closed after."""
    from .gitdriver.spec import open_spec

    with contextlib.ExitStack() as stack:
        yield [stack.enter_context(open_spec(spec)) for spec in specs]


def _summary(result: MergeResult) -> list[str]:
    c = result.counts
    parts = [f"{c['kept']} unchanged", f"{c['ours']} from ours", f"{c['theirs']} from theirs"]
    if c["both"]:
        parts.append(f"{c['both']} changed alike on both sides")
    if c["removed"]:
        parts.append(f"{c['removed']} removed")
    if c["merged"]:
        parts.append(f"{c['merged']} merged by {result.strategy}")
    written = len(result.tensors) - c["removed"]
    lines = [
        f"model-diff: merged {written} tensors into {printable(result.output)} "
        f"({result.format}): {', '.join(parts)}"
    ]
    for t in result.tensors:
        if t.resolved_by is not None:
            lines.append(
                f"  resolved {t.conflict} conflict by {t.resolved_by}: {printable(t.name)}"
            )
    return lines


def _conflict_lines(result: MergeResult) -> list[str]:
    conflicts = result.conflicts
    n = len(conflicts)
    lines = [
        f"model-diff: merge: {n} conflicting tensor{'s' if n != 1 else ''}; nothing written"
        + (f" (strategy {result.strategy})" if result.strategy != "fail" else "")
    ]
    for t in conflicts:
        note = f": {t.note}" if t.note else ""
        lines.append(f"  CONFLICT ({t.conflict}) {printable(t.name)}{note}")
    if result.strategy == "fail":
        lines.append(
            "hint: resolve with --strategy ours|theirs|"
            + "|".join(ARITHMETIC)
            + "; see what conflicts with `model-diff compare3 BASE OURS THEIRS`"
        )
    return lines


@click.command("merge")
@click.argument("base")
@click.argument("ours")
@click.argument("theirs")
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(),
    help="Where to write the merged checkpoint (OURS' format; a new folder for a HF model).",
)
@click.option(
    "--strategy",
    type=click.Choice(STRATEGIES),
    default="fail",
    show_default=True,
    help="How to resolve tensors both sides changed differently (fail: write nothing).",
)
@click.option(
    "--ties-k",
    type=click.FloatRange(min=0, max=100, min_open=True),
    default=DEFAULT_TIES_K,
    show_default=True,
    help="ties: percent of each update's largest-magnitude elements kept, per tensor.",
)
@format_option(["text", "json"], help="Summary format on stdout (json: every tensor's outcome).")
@workers_option
@click.pass_context
def merge(
    ctx: click.Context,
    base: str,
    ours: str,
    theirs: str,
    output: str,
    strategy: str,
    ties_k: float,
    fmt: str,
    workers: int | None,
) -> None:
    """Merge THEIRS into OURS tensor by tensor, relative to BASE, and write OUTPUT.

    Each argument is a path or REV:path (a file or folder at a git revision). A tensor
    changed on one side only comes from that side (exact bytes); conflicts (both sides
    changed it differently) need --strategy. Exit 0 written, 1 conflicts (nothing written),
    2 unreadable input or a checkpoint that cannot be written back faithfully.
    """
    from .merge import merge_checkpoints

    with _opened(base, ours, theirs) as (b, o, t):
        result = merge_checkpoints(b, o, t, output, strategy, ties_k=ties_k, workers=workers)
    if fmt == "json":
        click.echo(json.dumps(result.to_dict(), indent=2, allow_nan=False, ensure_ascii=False))
    elif result.written:
        click.echo("\n".join(_summary(result)))
    if not result.written:
        click.echo("\n".join(_conflict_lines(result)), err=True)
        ctx.exit(EXIT_CHECK_FAILED)


@click.command("compare3")
@click.argument("base")
@click.argument("ours")
@click.argument("theirs")
@format_option()
@output_option
@workers_option
def compare3(
    base: str, ours: str, theirs: str, fmt: str, output: str | None, workers: int | None
) -> None:
    """Three-way report: which side changed each tensor and how the two updates interfere.

    Each argument is a path or REV:path. For tensors changed on both sides: cos(Δours,
    Δtheirs), the share of elements whose updates disagree in sign, and the sizes of both
    updates; per layer type and block; and whether `model-diff merge` would merge cleanly.
    """
    from .report.threeway import render_threeway
    from .threeway import compare3 as analyse

    with _opened(base, ours, theirs) as (b, o, t):
        result = analyse(b, o, t, labels=(base, ours, theirs), workers=workers)
    write_output(render_threeway(result, fmt), output)


@click.command("merge-driver", context_settings={"ignore_unknown_options": True})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def merge_driver(args: tuple[str, ...]) -> None:
    """Git merge driver (`merge.model-diff.driver`): git passes %O %A %B %P.

    Merges tensor by tensor with `git config model-diff.mergeStrategy` (default fail).
    Exit 0: merged into %A (a new Git LFS object and its pointer for LFS files). Exit 1: a
    conflict, %A keeps ours and the three-way report is written under the git dir
    (model-diff/merge/PATH.txt and .html); anything that goes wrong is a conflict too.
    """
    from .gitdriver.mergedriver import main as driver_main

    sys.exit(driver_main(list(args)))


@click.command("mergetool")
@click.argument("base")
@click.argument("local")
@click.argument("remote")
@click.argument("merged")
@click.option(
    "--strategy",
    type=click.Choice(STRATEGIES),
    default=None,
    help="Resolve with this strategy (default: git config model-diff.mergeStrategy, or fail).",
)
@click.option(
    "--html",
    "as_html",
    is_flag=True,
    help="Show the three-way report as HTML in a browser instead of text.",
)
def mergetool(
    base: str, local: str, remote: str, merged: str, strategy: str | None, as_html: bool
) -> None:
    """`git mergetool -t model-diff` (BASE LOCAL REMOTE MERGED).

    Writes the merge into MERGED and exits 0 when the strategy resolves every conflict (git
    then marks the file resolved); otherwise shows the three-way report and exits 1, so the
    file stays conflicted.
    """
    from .gitdriver.mergedriver import resolve_with_tool

    try:
        res = resolve_with_tool(base, local, remote, merged, strategy=strategy)
    except ModelDiffError as e:
        click.echo(f"model-diff: error: {printable(str(e))}", err=True)
        sys.exit(EXIT_CHECK_FAILED)
    if res.merged:
        click.echo("\n".join(res.lines))
        return
    click.echo("\n".join(res.lines), err=True)
    if res.threeway is not None:
        _show_threeway(res.threeway, merged, as_html)
    click.echo(
        "model-diff: left conflicted; resolve with --strategy (or git config "
        "model-diff.mergeStrategy) and run git mergetool again",
        err=True,
    )
    sys.exit(EXIT_CHECK_FAILED)


def _show_threeway(three: ThreeWay, merged: str, as_html: bool) -> None:
    from .gitdriver.difftool import open_in_browser, write_temp_html
    from .report.threeway import render_threeway

    if not as_html:
        click.echo(render_threeway(three, "text"), nl=False)
        return
    path = write_temp_html(render_threeway(three, "html"))
    opened = open_in_browser(path)
    note = "" if opened else " (no browser found: open it yourself)"
    click.echo(f"model-diff: HTML report for {printable(merged)}: {printable(path)}{note}")
