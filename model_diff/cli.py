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
