"""What the ``model-diff`` commands share: option decorators and output helpers.

Every option that more than one command takes is defined here once (``format_option``,
``output_option``, ``color_option``, ``policy_option``, ...), so a flag means the same thing
and has the same help everywhere. The helpers print (stdout for results, stderr for
progress), like the command modules that use them (``cli_core``, ``cli_git``, ``cli_gate``,
``cli_merge``); the engine below them does neither.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import click

from .terminal import COLOR_MODES, color_enabled, guard_lines, printable

if TYPE_CHECKING:
    from .analysis import AnalysisConfig
    from .checkpoint import Checkpoint

__all__ = [
    "FAIL_ON",
    "REPORT_FORMATS",
    "PathspecCommand",
    "check_output",
    "color_option",
    "emit_driver_output",
    "fail_on_option",
    "format_option",
    "open_argument",
    "optimizer_option",
    "output_option",
    "policy_config",
    "policy_option",
    "progress_callback",
    "scope_options",
    "select_option",
    "unsafe_option",
    "use_color",
    "workers_option",
    "write_output",
]

F = TypeVar("F", bound=Callable[..., Any])

#: Formats of a diff report (``compare``, ``diff``, ``difftool``, ``demo``).
REPORT_FORMATS = ("text", "json", "markdown", "html")
#: What fails ``check`` / ``ci``.
FAIL_ON = ("error", "warning", "never")


# -- options ---------------------------------------------------------------------------------
def format_option(
    choices: Sequence[str] = REPORT_FORMATS, help: str = "Report format."
) -> Callable[[F], F]:
    """``--format`` (into the parameter ``fmt``), text by default."""
    return click.option(
        "--format",
        "fmt",
        type=click.Choice(list(choices)),
        default="text",
        show_default=True,
        help=help,
    )


def check_output(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """``-o`` is checked while the command line is parsed, before any work: a folder that
    does not exist or cannot be written fails now (exit 2), not after the whole comparison."""
    del ctx, param
    if value is not None and value != "-":
        from .output import check_destination

        check_destination(value)
    return value


output_option = click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False),
    callback=check_output,
    help="Write the report to FILE instead of stdout (a regular file is replaced atomically; "
    "a device, FIFO or /dev/stdout is written in place).",
)
color_option = click.option(
    "--color",
    "color_mode",
    type=click.Choice(COLOR_MODES),
    default="auto",
    show_default=True,
    help="ANSI colour in the text report: auto = on a terminal unless NO_COLOR is set.",
)
unsafe_option = click.option(
    "--unsafe-pickle",
    is_flag=True,
    help="Load .pt files with torch.load, running code from the file (trusted files only; "
    "needs torch). Without it model-diff reads them itself and runs nothing.",
)
select_option = click.option(
    "--select",
    metavar="PATH",
    help="Compare only the tensors under this dotted path of the file (one model of several, "
    "an EMA copy, ...); `inspect` lists the paths.",
)
optimizer_option = click.option(
    "--include-optimizer",
    is_flag=True,
    help="Compare the optimizer state too (tensors paired by parameter order).",
)
threshold_option = click.option(
    "--threshold",
    type=click.FloatRange(min=0),
    default=1e-6,
    show_default=True,
    help="An element counts as changed when |new-old| exceeds this (change_ratio).",
)
workers_option = click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=None,
    help="Worker threads reading tensors (default: min(4, cores)).",
)
policy_option = click.option(
    "--policy",
    "policy_file",
    type=click.Path(dir_okay=False),
    help="TOML policy file ([tool.model-diff.check] of a pyproject.toml, or its keys at the "
    "top level): its thresholds, allowed-frozen globs and levels judge the pair.",
)
fail_on_option = click.option(
    "--fail-on",
    type=click.Choice(FAIL_ON),
    default=None,
    help="Violations that fail (default: the policy's fail_on, 'error').",
)


def scope_options(f: F) -> F:
    """``--global`` / ``--system`` / ``--local`` (the default) into the parameter ``scope``."""
    for opt in reversed(
        [
            click.option(
                "--global", "scope", flag_value="global", help="~/.gitconfig + global attributes"
            ),
            click.option(
                "--system", "scope", flag_value="system", help="system gitconfig + attributes"
            ),
            click.option(
                "--local",
                "scope",
                flag_value="local",
                default=True,
                help="this repository (default)",
            ),
        ]
    ):
        f = opt(f)
    return f


class PathspecCommand(click.Command):
    """A command whose arguments after ``--`` are pathspecs (click itself drops the ``--``):
    they are in ``ctx.meta["model_diff.pathspecs"]``."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if "--" in args:
            i = args.index("--")
            ctx.meta["model_diff.pathspecs"] = list(args[i + 1 :])
            args = args[:i]
        return super().parse_args(ctx, args)


# -- helpers ---------------------------------------------------------------------------------
def policy_config(policy_file: str | None) -> AnalysisConfig | None:
    """The analyzer's configuration under ``--policy FILE`` (None without one: the report
    then uses the analyzer's own defaults). Errors name the file (exit 2)."""
    if policy_file is None:
        return None
    from model_diff.hooks.policy import load_policy_file

    return load_policy_file(policy_file).analysis_config()


def use_color(mode: str, fmt: str, output: str | None) -> bool:
    """Colour for a text report: --color always/never decide; auto colours a terminal stdout
    (not a file) unless NO_COLOR is set."""
    if fmt != "text" or mode == "never":
        return False
    return mode == "always" or (output is None and color_enabled(mode, sys.stdout))


def progress_callback() -> Any:
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


def open_argument(
    spec: str,
    unsafe_pickle: bool,
    *,
    select: str | None = None,
    include_optimizer: bool = False,
    state_choice: bool = False,
) -> Checkpoint:
    """Open a checkpoint argument: a path, or ``REV:path`` read from git history
    (``gitdriver.spec.open_spec`` decides which); narrowed to ``select`` / with the optimizer
    state when asked. ``state_choice`` prints which parts of the file are compared (stderr)
    when the file holds more than its weights."""
    from model_diff.gitdriver.spec import open_spec

    ckpt: Checkpoint = open_spec(spec, unsafe_pickle=unsafe_pickle)
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


def emit_driver_output(text: str) -> None:
    """Write a git driver's output; a closed pipe (``git diff | head``) is not an error."""
    import os

    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:
        # Point stdout at /dev/null so the interpreter's final flush cannot fail (exit 120).
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
