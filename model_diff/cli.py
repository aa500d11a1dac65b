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
from .errors import EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_USAGE, ModelDiffError


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


_ = EXIT_USAGE  # re-exported for commands below


# --- git integration: textconv, install, uninstall, status commands ---
_SCOPE_OPTIONS = [
    click.option("--global", "scope", flag_value="global", help="~/.gitconfig + global attributes"),
    click.option("--system", "scope", flag_value="system", help="system gitconfig + attributes"),
    click.option("--local", "scope", flag_value="local", default=True,
                 help="this repository (default)"),
]


def _scoped(f: Any) -> Any:
    for opt in reversed(_SCOPE_OPTIONS):
        f = opt(f)
    return f


@cli.command(context_settings={"ignore_unknown_options": False})
@click.argument("path", type=click.Path(dir_okay=True, path_type=str))
@click.option("--fast", is_flag=True, help="hashes only, no statistics")
@click.option("--format-version", type=int, default=None, hidden=True,
              help="written by install --cachetextconv so git's cache keys change with it")
def textconv(path: str, fast: bool, format_version: int | None) -> None:
    """Git textconv driver: one line per tensor (never fails; errors become one line)."""
    from gitdriver.textconv import main as textconv_main  # noqa: PLC0415

    args = [path, *(["--fast"] if fast else [])]
    if format_version is not None:
        args.append(f"--format-version={format_version}")
    sys.exit(textconv_main(args))


@cli.command()
@_scoped
@click.option("--pattern", "patterns", multiple=True, metavar="GLOB",
              help="attribute pattern (repeatable; default: *.safetensors *.pt *.pth *.bin "
                   "*.ckpt *.npz *.npy)")
@click.option("--external", is_flag=True,
              help="also register the external diff command (git diff only)")
@click.option("--cachetextconv", is_flag=True,
              help="let git cache textconv output in refs/notes/textconv/model-diff")
def install(scope: str, patterns: tuple[str, ...], external: bool, cachetextconv: bool) -> None:
    """Register the model-diff git drivers and .gitattributes lines."""
    from gitdriver.install import install as do_install  # noqa: PLC0415

    outcome = do_install(scope=scope, patterns=list(patterns) or None, external=external,
                         cachetextconv=cachetextconv)
    for change in outcome.changes:
        click.echo(str(change))
    if not outcome.changes:
        click.echo(f"model-diff: already installed ({scope}); nothing changed")
    for note in outcome.notes:
        click.echo(f"note: {note}")


@cli.command()
@_scoped
def uninstall(scope: str) -> None:
    """Remove exactly what install added (config keys and attribute lines)."""
    from gitdriver.install import uninstall as do_uninstall  # noqa: PLC0415

    outcome = do_uninstall(scope=scope)
    for change in outcome.changes:
        click.echo(str(change))
    if not outcome.changes:
        click.echo(f"model-diff: not installed ({scope}); nothing changed")


@cli.command()
@click.option("--pattern", "patterns", multiple=True, metavar="GLOB",
              help="patterns to check (default: the install defaults)")
def status(patterns: tuple[str, ...]) -> None:
    """Show driver config, the diff attribute per pattern, LFS, and fresh-clone fallbacks."""
    from gitdriver.status import collect, format_status  # noqa: PLC0415

    click.echo(format_status(collect(patterns=list(patterns) or None)), nl=False)
