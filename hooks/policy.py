"""The check policy: what fails a checkpoint check, read from TOML.

A ``Policy`` comes from ``[tool.model-diff.check]`` in the repository's ``pyproject.toml``
(found by walking up from the working directory to the git top level) or from an explicit
``--policy FILE`` (either a ``pyproject.toml`` or a plain TOML file whose top-level table is
the policy). Without any configuration the defaults below apply.

A policy is the analyzer's configuration, never a second judge: ``analysis_config()`` turns it
into an ``AnalysisConfig`` (thresholds, allowed-frozen globs, a level per insight code), and
``model_diff.analysis.DiffAnalyzer`` makes every finding under it.

An unknown key or a malformed value raises ``PolicyError`` naming the key and the file: a
typo must never silently fall back to a default. This module reads files only; it never runs
git, never prints and never exits.
"""

from __future__ import annotations

import dataclasses
import math
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from model_diff.analysis import INSIGHT_CODES, AnalysisConfig
from model_diff.errors import PolicyError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

#: Violation levels a severity override may name.
LEVELS = ("error", "warning", "ignore")

#: Insight codes the policy knows: the analyzer's stable codes (docs/insights.md).
KNOWN_CODES: tuple[str, ...] = tuple(sorted(INSIGHT_CODES))

#: The gate's default level of the codes it fails or warns on whatever their severity.
#: Other codes take their insight's severity: critical -> error, warning -> warning,
#: info -> ignore.
DEFAULT_LEVELS: Mapping[str, str] = {
    "nonfinite-values": "error",
    "unchecked-tensors": "error",
    "frozen-layers": "error",
    "low-cosine": "error",
    "large-relative-change": "error",
    "architecture-changed": "warning",
    "shape-changed": "warning",
    "dtype-changed": "warning",
}

#: Defaults of the numeric thresholds (docs/ci.md explains the choice). They are the gate's:
#: a report rendered without a policy uses the analyzer's own (AnalysisConfig).
DEFAULT_MIN_COSINE = 0.5
DEFAULT_MAX_RELATIVE_CHANGE = 1.0

_FAIL_ON = ("error", "warning", "never")


@dataclass(frozen=True)
class Policy:
    """What fails a check. Build it with ``load_policy`` or directly (tests, API users).

    A policy configures the analyzer (``analysis_config``): it never judges a diff itself.
    """

    #: fnmatch globs on tensor names that may stay bit-identical between two checkpoints.
    allow_frozen: tuple[str, ...] = ()
    #: A changed tensor whose cosine similarity to its old value is below this fails.
    min_cosine: float = DEFAULT_MIN_COSINE
    #: A changed tensor with ||new - old|| / ||old|| at or above this fails.
    max_relative_change: float = DEFAULT_MAX_RELATIVE_CHANGE
    #: Per-insight-code level overrides: code -> error | warning | ignore.
    severity: Mapping[str, str] = field(default_factory=dict)
    #: Which violations make ``check`` / ``ci`` exit 1 unless ``--fail-on`` says otherwise.
    fail_on: str = "error"
    #: Where the policy came from (a file path or "defaults"), for messages.
    source: str = "defaults"

    @property
    def levels(self) -> dict[str, str]:
        """The level of every code the policy names (defaults, then overrides)."""
        return dict(sorted({**DEFAULT_LEVELS, **self.severity}.items()))

    def analysis_config(self, base: AnalysisConfig | None = None) -> AnalysisConfig:
        """The analyzer's configuration under this policy: its thresholds, allowed-frozen
        globs and levels over ``base`` (the analyzer's defaults when None)."""
        return dataclasses.replace(
            base or AnalysisConfig(),
            low_cosine_threshold=self.min_cosine,
            significant_change_threshold=self.max_relative_change,
            allowed_frozen=self.allow_frozen,
            levels=self.levels,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "allow_frozen": list(self.allow_frozen),
            "min_cosine": self.min_cosine,
            "max_relative_change": self.max_relative_change,
            "severity": dict(self.severity),
        }


def _type_error(key: str, expected: str, value: object, source: str) -> PolicyError:
    return PolicyError(
        f"policy key {key!r} must be {expected}, got {value!r}",
        path=source,
        hint="see docs/ci.md, 'The policy', for the policy keys",
    )


def policy_from_mapping(table: Mapping[str, Any], source: str = "<mapping>") -> Policy:
    """Validate one ``[tool.model-diff.check]`` table and build the ``Policy``."""
    known = {"allow_frozen", "min_cosine", "max_relative_change", "severity", "fail_on"}
    for key in table:
        if key not in known:
            raise PolicyError(
                f"unknown policy key {key!r} in [tool.model-diff.check]",
                path=source,
                hint=f"known keys: {', '.join(sorted(known))}",
            )
    kw: dict[str, Any] = {"source": source}
    if "allow_frozen" in table:
        globs = table["allow_frozen"]
        if isinstance(globs, str):
            globs = [globs]
        if not (isinstance(globs, list) and all(isinstance(g, str) and g for g in globs)):
            raise _type_error("allow_frozen", "a list of glob strings", globs, source)
        kw["allow_frozen"] = tuple(globs)
    for key in ("min_cosine", "max_relative_change"):
        if key in table:
            v = table[key]
            if isinstance(v, bool) or not isinstance(v, (int, float)) or math.isnan(v):
                raise _type_error(key, "a number", v, source)
            if key == "min_cosine" and not (-1.0 <= v <= 1.0 or v == -math.inf):
                raise _type_error(key, "a number in [-1, 1] (or -inf to disable)", v, source)
            if key == "max_relative_change" and not v > 0:
                raise _type_error(key, "a number > 0 (or inf to disable)", v, source)
            kw[key] = float(v)
    if "fail_on" in table:
        v = table["fail_on"]
        if v not in _FAIL_ON:
            raise _type_error("fail_on", " | ".join(_FAIL_ON), v, source)
        kw["fail_on"] = v
    if "severity" in table:
        sev = table["severity"]
        if not isinstance(sev, Mapping):
            raise _type_error("severity", "a table of code = level", sev, source)
        out: dict[str, str] = {}
        for code, level in sev.items():
            if code not in KNOWN_CODES:
                raise PolicyError(
                    f"unknown insight code {code!r} in [tool.model-diff.check.severity]",
                    path=source,
                    hint=f"known codes: {', '.join(KNOWN_CODES)}",
                )
            if level not in LEVELS:
                raise _type_error(f"severity.{code}", " | ".join(LEVELS), level, source)
            if code == "nonfinite-values" and level != "error":
                raise PolicyError(
                    "policy key 'severity.nonfinite-values' cannot be lowered: NaN/Inf always fail",
                    path=source,
                    hint="remove the override",
                )
            out[code] = level
        kw["severity"] = dict(sorted(out.items()))
    return Policy(**kw)


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise PolicyError(
            "policy file not found", path=path, hint="pass an existing TOML file to --policy"
        ) from None
    except OSError as e:
        raise PolicyError(f"cannot read policy file ({e.strerror})", path=path) from None
    except tomllib.TOMLDecodeError as e:
        raise PolicyError(f"not valid TOML ({e})", path=path, hint="fix the TOML syntax") from None


def _check_table(doc: Mapping[str, Any], path: Path) -> Mapping[str, Any] | None:
    """The ``[tool.model-diff.check]`` table of a parsed pyproject (None when absent)."""
    tool = doc.get("tool", {})
    md = tool.get("model-diff") if isinstance(tool, Mapping) else None
    if md is None:
        return None
    if not isinstance(md, Mapping):
        raise _type_error("tool.model-diff", "a table", md, str(path))
    table = md.get("check")
    if table is not None and not isinstance(table, Mapping):
        raise _type_error("tool.model-diff.check", "a table", table, str(path))
    return table


def load_policy_file(path: str | os.PathLike[str]) -> Policy:
    """A policy from ``--policy FILE``: a pyproject.toml or a TOML file holding the table."""
    p = Path(path)
    doc = _read_toml(p)
    table = _check_table(doc, p) if "tool" in doc else doc
    return policy_from_mapping(table or {}, str(p))


def find_pyproject(
    start: str | os.PathLike[str],
    stop: str | os.PathLike[str] | None,
) -> Path | None:
    """The nearest ``pyproject.toml`` from ``start`` up to ``stop`` (the git top level).

    Outside a repository (``stop`` None) only ``start`` itself is looked at.
    """
    here = Path(start).resolve()
    top = Path(stop).resolve() if stop is not None else here  # outside git: cwd only
    for d in (here, *here.parents):
        candidate = d / "pyproject.toml"
        if candidate.is_file():
            return candidate
        if d == top:
            break
    return None


def load_policy(
    policy_file: str | os.PathLike[str] | None = None,
    *,
    cwd: str | os.PathLike[str] = ".",
    top_level: str | os.PathLike[str] | None = None,
) -> Policy:
    """The policy in effect: ``policy_file`` if given, else the repo's pyproject, else defaults.

    A pyproject.toml without ``[tool.model-diff.check]`` gives the defaults.
    """
    if policy_file is not None:
        return load_policy_file(policy_file)
    pyproject = find_pyproject(cwd, top_level)
    if pyproject is None:
        return Policy()
    table = _check_table(_read_toml(pyproject), pyproject)
    if table is None:
        return Policy()
    return policy_from_mapping(table, str(pyproject))
