"""Reversible edits of a ``.gitattributes`` file: what install adds and uninstall takes back.

Pure text in, text out (no I/O, no git), so every case is easy to test byte for byte.

Install points two attributes at the driver, ``diff`` (textconv, difftool) and ``merge`` (the
merge driver), and records what it did inside one marked block at the end of the file:

- a line that already names a pattern with ``diff=lfs`` / ``merge=lfs`` (what ``git lfs track``
  writes: ``*.bin filter=lfs diff=lfs merge=lfs -text``) gets them turned into
  ``diff=model-diff`` / ``merge=model-diff`` *in place*: an appended line for the same pattern
  would lose to any LFS line that ``git lfs track`` appends later, and this keeps one line per
  pattern. The block records ``# model-diff: edited PATTERN diff=lfs merge=lfs`` so uninstall
  restores them (a block of an older install, ``diff=lfs`` alone, reads the same way).
- every attribute not set that way gets ``PATTERN diff=model-diff merge=model-diff`` (or the
  one missing) inside the block, which sits last in the file so it wins over earlier lines.

The default patterns are one per checkpoint extension of the readers' registry
(``model_diff.formats.CHECKPOINT_EXTENSIONS``), in any letter case: ``*.[sS][aA]...``, so
``MODEL.SAFETENSORS`` gets the driver as ``model.safetensors`` does. Such a pattern also
edits an LFS line for the lower-case form (``*.safetensors filter=lfs diff=lfs ...``) in
place, then adds its own line for the other spellings.

Uninstall removes the block and reverts the recorded edits; a final newline install had to add,
or a file install created, is taken back too, so the file is byte-identical to before.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from model_diff.formats import CHECKPOINT_EXTENSIONS

DRIVER = "model-diff"
#: The attributes install points at the driver: ``diff`` (textconv, difftool) and ``merge``.
ATTRIBUTES = ("diff", "merge")
BEGIN = "# >>> model-diff: added by `model-diff install`; `model-diff uninstall` removes this block"
END = "# <<< model-diff"
_EDITED = "# model-diff: edited "
_CREATED = "# model-diff: created this file"
_ADDED_EOL = "# model-diff: added the final newline of the line above this block"


def any_case_glob(ext: str) -> str:
    """``*.[sS][tT]`` for ``.st``: the attribute pattern for an extension in any letter case."""
    return "*." + "".join(f"[{c.lower()}{c.upper()}]" if c.isalpha() else c for c in ext[1:])


def lower_form(pattern: str) -> str:
    """``*.st`` for ``*.[sS][tT]``: the one spelling ``git lfs track`` would have written."""
    return re.sub(r"\[([a-z])([A-Z])\]", lambda m: m.group(1), pattern)


DEFAULT_PATTERNS = tuple(any_case_glob(ext) for ext in CHECKPOINT_EXTENSIONS)


@dataclass
class _Parsed:
    before: list[str]  # lines (with their endings) outside the block, in order
    after: list[str]
    has_block: bool = False
    #: pattern -> attributes whose ``=lfs`` install turned into ``=model-diff`` on its line
    edited: dict[str, list[str]] = field(default_factory=dict)
    #: pattern -> attributes its line in the block sets to the driver
    added: dict[str, list[str]] = field(default_factory=dict)
    created: bool = False
    added_eol: bool = False


def _newline_of(lines: list[str]) -> str:
    for line in lines:
        if line.endswith("\r\n"):
            return "\r\n"
        if line.endswith("\n"):
            return "\n"
    return "\n"


def _ordered(attrs: Iterable[str]) -> list[str]:
    wanted = set(attrs)
    return [a for a in ATTRIBUTES if a in wanted]


def _parse(text: str) -> _Parsed:
    lines = text.splitlines(keepends=True)
    begin = end = None
    for i, line in enumerate(lines):
        stripped = line.rstrip("\r\n")
        if begin is None and stripped == BEGIN:
            begin = i
        elif begin is not None and stripped == END:
            end = i
            break
    if begin is None or end is None:
        return _Parsed(before=lines, after=[])
    p = _Parsed(before=lines[:begin], after=lines[end + 1 :], has_block=True)
    for line in lines[begin + 1 : end]:
        s = line.rstrip("\r\n")
        if s.startswith(_EDITED):
            # "PATTERN diff=lfs merge=lfs" (older installs recorded "PATTERN diff=lfs")
            pat, *tokens = s[len(_EDITED) :].split()
            p.edited[pat] = _ordered(t[: -len("=lfs")] for t in tokens if t.endswith("=lfs"))
        elif s == _CREATED:
            p.created = True
        elif s == _ADDED_EOL:
            p.added_eol = True
        elif s and not s.startswith("#"):
            pat, *tokens = s.split()
            p.added[pat] = _ordered(a for a in ATTRIBUTES if f"{a}={DRIVER}" in tokens)
    return p


def _pattern_of(line: str) -> str | None:
    s = line.strip()
    if not s or s.startswith("#"):
        return None
    return s.split()[0]


def _value(line: str, attr: str) -> str | None:
    """The value a line sets for ``attr``: ``lfs``, ``model-diff``, ``-`` (unset), or None."""
    val = None
    for tok in line.split()[1:]:
        if tok.startswith(f"{attr}="):
            val = tok[len(attr) + 1 :]
        elif tok in (f"-{attr}", f"!{attr}"):
            val = "-"
        elif tok == attr:
            val = "set"
    return val


def _swap(line: str, attr: str, old: str, new: str) -> str:
    """``attr=old`` -> ``attr=new`` (the first whole token) on one line."""
    return re.sub(rf"(?<=\s){attr}={re.escape(old)}(?=\s|$)", f"{attr}={new}", line, count=1)


def install_text(text: str | None, patterns: list[str]) -> str:
    """The file's new text after installing ``patterns`` (``None`` = the file does not exist).

    Idempotent: installing what is already installed returns ``text`` unchanged; a block
    written by an older install (``diff`` only) gains ``merge``.
    """
    p = _parse(text or "")
    outside = p.before + p.after
    nl = _newline_of(outside) if outside else "\n"
    edited = {k: list(v) for k, v in p.edited.items()}
    added = {k: list(v) for k, v in p.added.items()}
    for pat in patterns:
        handled = set(added.get(pat, [])) | set(edited.get(pat, []))
        for form in dict.fromkeys((pat, lower_form(pat))):
            for attr in ATTRIBUTES:
                if form == pat and attr in handled:
                    continue
                # The last line outside our block that names exactly this pattern and sets attr.
                last = None
                for line in outside:
                    if _pattern_of(line) == form and _value(line, attr) is not None:
                        last = _value(line, attr)
                if last == "lfs" and attr not in edited.get(form, []):
                    for i, line in enumerate(outside):
                        if _pattern_of(line) == form and _value(line, attr) == "lfs":
                            outside[i] = _swap(line, attr, "lfs", DRIVER)
                    edited[form] = _ordered([*edited.get(form, []), attr])
                    if form == pat:
                        handled.add(attr)
                elif last == DRIVER and form == pat:
                    handled.add(attr)  # someone (a teammate's committed .gitattributes) did it
        missing = [a for a in ATTRIBUTES if a not in handled]
        if missing:
            added[pat] = _ordered([*added.get(pat, []), *missing])
    if not edited and not added and not p.has_block:
        return text or ""
    before = outside[: len(p.before)]
    after = outside[len(p.before) :]
    created = p.created or text is None
    added_eol = p.added_eol
    tail = before + after if not p.has_block else before
    if not p.has_block and tail and not tail[-1].endswith("\n"):
        tail = [*tail[:-1], tail[-1] + nl]
        added_eol = True
    block = [BEGIN + nl]
    if created:
        block.append(_CREATED + nl)
    if added_eol:
        block.append(_ADDED_EOL + nl)
    for pat, attrs in edited.items():
        block.append(f"{_EDITED}{pat} " + " ".join(f"{a}=lfs" for a in attrs) + nl)
    for pat, attrs in added.items():
        block.append(f"{pat} " + " ".join(f"{a}={DRIVER}" for a in attrs) + nl)
    block.append(END + nl)
    if p.has_block:
        return "".join(before + block + after)
    return "".join(tail + block)


def uninstall_text(text: str) -> str | None:
    """The file's text with everything install did taken back (None = delete the file)."""
    p = _parse(text)
    if not p.has_block:
        return text
    lines = p.before + p.after
    for i, line in enumerate(lines):
        for attr in p.edited.get(_pattern_of(line) or "", []):
            if _value(lines[i], attr) == DRIVER:
                lines[i] = _swap(lines[i], attr, DRIVER, "lfs")
    if p.added_eol and p.before and not p.after:
        last = lines[len(p.before) - 1]
        lines[len(p.before) - 1] = last[:-2] if last.endswith("\r\n") else last[:-1]
    out = "".join(lines)
    if p.created and out == "":
        return None
    return out


def installed(text: str) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """(pattern -> attributes set in install's block, pattern -> attributes install turned
    from ``lfs`` to the driver on the pattern's own line)."""
    p = _parse(text)
    return p.added, p.edited
