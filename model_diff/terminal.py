"""Text that is safe on a terminal and in a CI log, whatever a checkpoint holds.

Tensor names, file names, metadata and error details come from files we do not control.

- ``printable(s)`` shows every control or invisible character as an escape (C0 and C1
  controls, ESC, DEL, bidi overrides U+202A-U+202E and isolates U+2066-U+2069, line
  separators, ...), so a name can neither repaint the terminal, set its title, add a link,
  forge a line nor reorder the text around it. Every human-facing output passes names and
  paths through it: reports, the progress line, the git drivers, the hooks' text.
- ``guard_lines(text)`` keeps a whole text from carrying CI workflow commands. GitHub's runner
  executes a line whose first non-blank characters are ``::`` (``::set-output``, ``::error``)
  and, in its legacy form, ``##[command]`` anywhere in a line; such text is shown escaped.
- ``color_enabled(mode, stream)``: ANSI colour for ``--color auto|always|never``, honouring
  ``NO_COLOR`` (https://no-color.org) and ``TERM=dumb`` in ``auto``.

This module must not import click or anything heavy: the git textconv uses it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import TextIO

__all__ = [
    "COLOR_MODES",
    "color_enabled",
    "guard_json",
    "guard_lines",
    "printable",
    "printable_lines",
]

#: The values of ``--color``.
COLOR_MODES = ("auto", "always", "never")


_SHORT = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(ch: str) -> str:
    if ch in _SHORT:
        return _SHORT[ch]
    o = ord(ch)
    if 0xDC80 <= o <= 0xDCFF:  # an undecodable byte of a file name (os.fsdecode's escape)
        return f"\\x{o - 0xDC00:02x}"
    if o < 0x100:
        return f"\\x{o:02x}"
    if o < 0x10000:
        return f"\\u{o:04x}"
    return f"\\U{o:08x}"


def printable(text: str) -> str:
    """``text`` with control and other non-printable characters shown as escapes.

    "Printable" is Python's ``str.isprintable``: everything but the Unicode categories Cc
    (controls, ESC, DEL, C1), Cf (format: bidi overrides and isolates, zero-width joiners),
    Zl/Zp (line and paragraph separators), Zs other than the space, Cs, Co and Cn. The
    visible escape keeps a name recognisable and the output on one line.
    """
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else _escape(ch) for ch in text)


def printable_lines(text: str) -> str:
    """``printable`` applied line by line: the line breaks stay, everything else is escaped."""
    return "\n".join(printable(line) for line in text.split("\n"))


# A line whose first non-blank characters are "::" (the runner trims leading white space,
# Unicode's included, before it looks for a command; it also ends a line at a lone CR).
_COMMAND_START = re.compile(r"(^|\r)([^\S\r\n]*):(?=:)", re.MULTILINE)


def guard_lines(text: str) -> str:
    """``text`` with nothing a CI runner would execute: a line starting (after blanks) with
    ``::`` gets its first colon shown as ``\\x3a``, and ``##[`` becomes ``##\\x5b``.

    Apply it to whole human-facing texts (reports, check output), never to the workflow
    commands ``--format github`` means to write.
    """
    text = _COMMAND_START.sub(lambda m: m.group(1) + m.group(2) + "\\x3a", text)
    return text.replace("##[", "##\\x5b")


def _json_escape(ch: str) -> str:
    if ch.isprintable() or ch == "\n":
        return ch
    units = ch.encode("utf-16-be", "surrogatepass")  # a pair of \u escapes above the BMP
    return "".join(f"\\u{units[i] << 8 | units[i + 1]:04x}" for i in range(0, len(units), 2))


def guard_json(text: str) -> str:
    """JSON text with the same data, safe to print: every non-printable character (JSON
    leaves DEL, C1 controls and bidi overrides raw) written as a ``\\u`` escape, and ``##[``
    as ``##\\u005b``. Outside its strings JSON is printable ASCII, so only strings change."""
    if text.isascii() and "\x7f" not in text and "##[" not in text:
        return text
    if not text.replace("\n", "").isprintable():
        text = "".join(_json_escape(ch) for ch in text)
    return text.replace("##[", "##\\u005b")


def color_enabled(
    mode: str = "auto", stream: TextIO | None = None, environ: Mapping[str, str] | None = None
) -> bool:
    """Whether to write ANSI colour to ``stream``: ``always`` and ``never`` decide; ``auto``
    colours a terminal unless ``NO_COLOR`` is set (to anything non-empty) or ``TERM=dumb``."""
    if mode == "always":
        return True
    if mode == "never":
        return False
    env = os.environ if environ is None else environ
    if env.get("NO_COLOR") or env.get("TERM") == "dumb":
        return False
    try:
        return stream is not None and stream.isatty()
    except ValueError:  # a closed stream
        return False
