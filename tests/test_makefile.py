"""The Makefile's targets, `make help` and the make commands the README and docs/ tell users to type agree."""

from __future__ import annotations

import re
import subprocess

import pytest

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


@pytest.mark.parametrize("recorded_in", ["stamp", "pyvenv.cfg"])
def test_a_venv_set_up_before_the_repository_moved_is_created_again(tmp_path, recorded_in) -> None:
    """`mv ~/code/project ~/work/`, then `make demo`: the stamp was up to date, so make ran .venv's programs, which
    name the old path in their #! lines (`.venv/bin/dbt: bad interpreter`). A .venv set up elsewhere is made again,
    also one whose stamp is empty (set up before the stamp said where): then pyvenv.cfg says."""
    repo = tmp_path / "moved here"
    (repo / ".venv" / "bin").mkdir(parents=True)
    for name in ("Makefile", "requirements.txt", "pyproject.toml"):
        (repo / name).write_bytes((REPO_ROOT / name).read_bytes())
    (repo / ".venv" / "from-before").touch()
    stamp = repo / ".venv" / ".requirements-installed"
    if recorded_in == "stamp":
        stamp.write_text(f"{tmp_path / 'set up here'}\n")
    else:
        stamp.touch()
        (repo / ".venv" / "pyvenv.cfg").write_text(
            f"home = /usr/bin\ncommand = /usr/bin/python3.11 -m venv {tmp_path / 'set up here' / '.venv'}\n"
        )
    python = tmp_path / "python3.11"  # stands in for Python and its venv: setting up here is what is tested
    python.write_text(
        '#!/bin/sh\n[ "$1" = -m ] || exit 0\nmkdir -p "$3/bin"\n'
        'for p in python pip; do printf "#!/bin/sh\\n" > "$3/bin/$p"; chmod +x "$3/bin/$p"; done\n'
    )
    python.chmod(0o755)
    make = ["make", "-s", "setup", f"PYTHON={python}"]
    moved = subprocess.run(make, cwd=repo, capture_output=True, text=True, timeout=60)
    assert moved.returncode == 0, moved.stderr
    assert moved.stdout == (
        f".venv was set up in {tmp_path / 'set up here'}, and the repository has moved since: creating it again here\n"
    )
    assert not (repo / ".venv" / "from-before").exists()
    assert stamp.read_text() == f"{repo.resolve()}\n"
    again = subprocess.run(make, cwd=repo, capture_output=True, text=True, timeout=60)
    assert (again.returncode, again.stdout) == (0, ""), again.stderr
