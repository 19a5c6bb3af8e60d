"""Finds a table in the README or docs/ by its first heading, so that tests hold the docs to the code they describe."""

from __future__ import annotations

from warehouse_db.settings import REPO_ROOT


def documented_table(first_heading: str) -> str:
    """The markdown table whose header row starts with ``| first_heading |``, from README.md or a page of docs/."""
    pages = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("**/*.md"))]
    for page in pages:
        lines = page.read_text(encoding="utf-8").splitlines()
        for i, line in enumerate(lines):
            if line.startswith(f"| {first_heading} |"):
                end = next((j for j in range(i, len(lines)) if not lines[j].startswith("|")), len(lines))
                return "\n".join(lines[i:end])
    raise AssertionError(f"no table headed '{first_heading}' in README.md or docs/")
