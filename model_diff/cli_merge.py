"""The ``merge`` and ``compare3`` commands (registered on the ``model-diff`` group by ``cli``).

``merge BASE OURS THEIRS -o OUT`` runs ``merge.merge_checkpoints``: exit 0 when the merged
checkpoint was written, 1 when conflicts remain (listed on stderr; nothing written), 2 for
unreadable or unwritable input. ``compare3 BASE OURS THEIRS`` renders the three-way report.
Like ``cli``, this module prints and exits; the engine below it does neither.
"""

from __future__ import annotations

import json

import click

from .cli_options import workers_option as _workers_option
from .errors import EXIT_CHECK_FAILED
from .merge import ARITHMETIC, DEFAULT_TIES_K, STRATEGIES, MergeResult
from .terminal import printable


def write_text(text: str, output: str | None) -> None:
    """The report on stdout, or written to ``output`` atomically."""
    if output is None or output == "-":
        click.echo(text, nl=not text.endswith("\n"))
        return
    from .writers.base import atomic_file

    with atomic_file(output) as f:
        f.write(text.encode("utf-8"))


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
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="Summary format on stdout (json: every tensor's outcome).",
)
@_workers_option
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

    A tensor changed on one side only comes from that side (exact bytes); conflicts (both
    sides changed it differently) need --strategy. Exit 0 written, 1 conflicts (nothing
    written), 2 unreadable input or a checkpoint that cannot be written back faithfully.
    """
    from .merge import merge_checkpoints

    result = merge_checkpoints(base, ours, theirs, output, strategy, ties_k=ties_k, workers=workers)
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
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json", "markdown", "html"]),
    default="text",
    show_default=True,
    help="Report format.",
)
@click.option(
    "-o", "--output", type=click.Path(dir_okay=False), help="Write the report to FILE instead."
)
@_workers_option
def compare3(
    base: str, ours: str, theirs: str, fmt: str, output: str | None, workers: int | None
) -> None:
    """Three-way report: which side changed each tensor and how the two updates interfere.

    For tensors changed on both sides: cos(Δours, Δtheirs), the share of elements whose
    updates disagree in sign, and the sizes of both updates; per layer type and block; and
    whether `model-diff merge` would merge cleanly.
    """
    from .report.threeway import render_threeway
    from .threeway import compare3_files

    result = compare3_files(base, ours, theirs, workers=workers)
    write_text(render_threeway(result, fmt), output)
