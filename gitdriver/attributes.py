"""Reversible edits of a ``.gitattributes`` file: what install adds and uninstall takes back.

Pure text in, text out (no I/O, no git), so every case is easy to test byte for byte.

Install does two things, and records both inside one marked block at the end of the file:

- a line that already names a pattern with ``diff=lfs`` (what ``git lfs track`` writes) gets
  ``diff=lfs`` turned into ``diff=model-diff`` *in place*: an appended line for the same pattern
  would lose to any LFS line that ``git lfs track`` appends later, and this keeps one line per
  pattern. The block records ``# model-diff: edited PATTERN diff=lfs`` so uninstall restores it.
- every other pattern gets ``PATTERN diff=model-diff`` inside the block, which sits last in the
  file so it wins over earlier lines.

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
from dataclasses import dataclass, field

from model_diff.formats import CHECKPOINT_EXTENSIONS

DRIVER = "model-diff"
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
    edited: list[str] = field(default_factory=list)  # patterns whose diff=lfs we changed
    added: list[str] = field(default_factory=list)  # patterns we appended
    created: bool = False
    added_eol: bool = False


def _newline_of(lines: list[str]) -> str:
    for line in lines:
        if line.endswith("\r\n"):
            return "\r\n"
        if line.endswith("\n"):
            return "\n"
    return "\n"


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
            p.edited.append(s[len(_EDITED) :].rsplit(" diff=lfs", 1)[0])
        elif s == _CREATED:
            p.created = True
        elif s == _ADDED_EOL:
            p.added_eol = True
        elif s and not s.startswith("#"):
            p.added.append(s.split()[0])
    return p


def _pattern_of(line: str) -> str | None:
    s = line.strip()
    if not s or s.startswith("#"):
        return None
    return s.split()[0]


_DIFF_LFS = re.compile(r"(?<=\s)diff=lfs(?=\s|$)")
_DIFF_OURS = re.compile(r"(?<=\s)diff=model-diff(?=\s|$)")


def _diff_value(line: str) -> str | None:
    """The diff attribute a line sets: ``lfs``, ``model-diff``, ``-`` (unset), or None."""
    val = None
    for tok in line.split()[1:]:
        if tok.startswith("diff="):
            val = tok[len("diff=") :]
        elif tok in ("-diff", "!diff"):
            val = "-"
        elif tok == "diff":
            val = "set"
    return val


def install_text(text: str | None, patterns: list[str]) -> str:
    """The file's new text after installing ``patterns`` (``None`` = the file does not exist).

    Idempotent: installing what is already installed returns ``text`` unchanged.
    """
    p = _parse(text or "")
    outside = p.before + p.after
    nl = _newline_of(outside) if outside else "\n"
    edited, added = list(p.edited), list(p.added)
    for pat in patterns:
        if pat in edited or pat in added:
            continue
        for form in dict.fromkeys((pat, lower_form(pat))):
            # The last line outside our block that names exactly this pattern and sets diff.
            last_val = None
            for line in outside:
                if _pattern_of(line) == form and _diff_value(line) is not None:
                    last_val = _diff_value(line)
            if last_val == "lfs" and form not in edited:
                for i, line in enumerate(outside):
                    if _pattern_of(line) == form and _diff_value(line) == "lfs":
                        outside[i] = _DIFF_LFS.sub(f"diff={DRIVER}", line, count=1)
                edited.append(form)
            elif last_val == DRIVER and form == pat:
                break  # someone (a teammate's committed .gitattributes) already did it
        else:
            if pat not in edited:
                added.append(pat)
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
    block += [f"{_EDITED}{pat} diff=lfs{nl}" for pat in edited]
    block += [f"{pat} diff={DRIVER}{nl}" for pat in added]
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
        if _pattern_of(line) in p.edited and _diff_value(line) == DRIVER:
            lines[i] = _DIFF_OURS.sub("diff=lfs", line, count=1)
    if p.added_eol and p.before and not p.after:
        last = lines[len(p.before) - 1]
        lines[len(p.before) - 1] = last[:-2] if last.endswith("\r\n") else last[:-1]
    out = "".join(lines)
    if p.created and out == "":
        return None
    return out


def installed_patterns(text: str) -> tuple[list[str], list[str]]:
    """(patterns appended by install, patterns whose LFS line install edited)."""
    p = _parse(text)
    return p.added, p.edited
