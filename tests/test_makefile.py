"""The Makefile's targets, `make help` and the make commands the README and docs/ tell users to type agree."""

from __future__ import annotations

import re
import subprocess

from warehouse_db.settings import REPO_ROOT


def phony_targets() -> set[str]:
    makefile = (REPO_ROOT / "Makefile").read_text(encoding="utf-8")
    return set(re.search(r"^\.PHONY:(.*)$", makefile, re.MULTILINE).group(1).split())


def test_make_help_names_every_target() -> None:
    """`make help` is what a newcomer reads first; a target it leaves out (`make clean` deletes runs/) is a surprise."""
    shown = subprocess.run(["make", "-s", "help"], cwd=REPO_ROOT, capture_output=True, text=True, check=True).stdout
    words = set(re.findall(r"[a-z][a-z-]*[a-z]", shown))
    assert not phony_targets() - {"help"} - words, "targets missing from `make help`"


def test_every_make_command_in_the_docs_is_a_target() -> None:
    pages = [REPO_ROOT / "README.md", *sorted(REPO_ROOT.glob("docs/*.md"))]
    documented = {target for page in pages for target in re.findall(r"`make ([a-z][a-z-]*)", page.read_text("utf-8"))}
    assert not documented - phony_targets(), "the docs name make targets the Makefile does not have"
