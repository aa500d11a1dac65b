"""README.md is a short front page and docs/ tell only what is in the repository.

README.md stays under 300 lines and opens with the two set-up commands `.ci/run` executes;
no page points outside the repository (no ``../shared``, design sections, git notes) or
says "earlier"; every relative link and anchor resolves; the command tables and exit codes
follow the CLI.
"""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

import pytest

from model_diff import errors
from model_diff.cli import all_commands
from tests.conftest import PROJECT_ROOT

README = PROJECT_ROOT / "README.md"
PAGES = [README, *sorted((PROJECT_ROOT / "docs").glob("*.md"))]
PAGE_IDS = [p.relative_to(PROJECT_ROOT).as_posix() for p in PAGES]

#: Words that point outside the repository.
OUTSIDE = ("../shared", "DESIGN §", "DESIGN.md", "STYLE.md", "GIT-NOTES")


def test_readme_is_a_short_front_page() -> None:
    """README.md has at most 300 lines."""
    assert len(README.read_text("utf-8").splitlines()) <= 300


def test_readme_opens_with_the_two_setup_commands() -> None:
    """The first two ```bash blocks are the commands .ci/run runs verbatim."""
    blocks = re.findall(r"^```bash\n(.*?)^```", README.read_text("utf-8"), re.S | re.M)
    assert blocks[:2] == [
        "pip install . && model-diff demo\n",
        'pip install "torch==2.13.0" && pip install -e ".[dev]" && python -m pytest -q\n',
    ]
    assert "apt-get install -y git-lfs chromium" in README.read_text("utf-8")


@pytest.mark.parametrize("page", PAGES, ids=PAGE_IDS)
def test_no_page_points_outside_the_repository_or_tells_history(page: Path) -> None:
    """No reference to files outside the repository and no "earlier" (history belongs in
    commit messages): `grep -n "GIT-NOTES\\|DESIGN §\\|earlier" README.md docs/*.md` is empty."""
    text = page.read_text("utf-8")
    for word in OUTSIDE:
        assert word not in text, f"{page.name}: {word!r}"
    history = [line for line in text.splitlines() if "earlier" in line]
    assert not history, f"{page.name}: {history}"


def slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces -> '-'."""
    text = re.sub(r"`|\*\*|\[|\]\([^)]*\)", "", heading.strip()).lower()
    kept = "".join(c for c in text if c in " -_" or unicodedata.category(c)[0] in ("L", "N"))
    return kept.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = re.sub(r"^```.*?^```", "", page.read_text("utf-8"), flags=re.S | re.M)
    return {slug(h) for h in re.findall(r"^#{1,6} (.+)$", text, re.M)}


@pytest.mark.parametrize("page", PAGES, ids=PAGE_IDS)
def test_relative_links_resolve(page: Path) -> None:
    """Every relative link names a file that exists and, with #anchor, one of its headings."""
    text = re.sub(r"^```.*?^```", "", page.read_text("utf-8"), flags=re.S | re.M)
    links = re.findall(r"\]\(([^)\s]+)\)", text)
    for link in links:
        if re.match(r"[a-z]+:", link):
            continue
        target, _, anchor = link.partition("#")
        path = (page.parent / target).resolve() if target else page
        assert path.exists(), f"{page.name}: {link}"
        if anchor:
            assert anchor in anchors(path), f"{page.name}: {link}"


def test_readme_links_every_docs_page() -> None:
    """The README's front page leads to every page of docs/."""
    text = README.read_text("utf-8")
    for page in PAGES[1:]:
        assert f"](docs/{page.name})" in text, page.name


def test_slug_follows_github() -> None:
    """The anchor rule the link test uses, on headings of these pages."""
    assert slug("Revisions: `REV:path`") == "revisions-revpath"
    assert slug("In git: the merge driver and `git mergetool -t model-diff`") == (
        "in-git-the-merge-driver-and-git-mergetool--t-model-diff"
    )
    assert slug("Colour: `--color` and `NO_COLOR`") == "colour---color-and-no_color"


def test_cli_reference_shows_every_command() -> None:
    """docs/cli.md's synopsis names every command the CLI has."""
    text = (PROJECT_ROOT / "docs" / "cli.md").read_text("utf-8")
    synopsis = text.split("## Commands", 1)[1].split("```text\n", 1)[1].split("```", 1)[0]
    for name in all_commands():
        assert re.search(rf"(model-diff|\|) {re.escape(name)}\b", synopsis), name


@pytest.mark.parametrize("page", [README, PROJECT_ROOT / "docs" / "cli.md"], ids=["README", "cli"])
def test_exit_code_tables_list_every_exit_code(page: Path) -> None:
    """The exit-code table has a row for every EXIT_* code and no other."""
    text = page.read_text("utf-8")
    table = text.split("| exit code | meaning |", 1)[1].split("\n\n", 1)[0]
    rows = {int(m) for m in re.findall(r"^\| (\d+) \|", table, re.M)}
    codes = {v for k, v in vars(errors).items() if k.startswith("EXIT_")}
    assert rows == codes
