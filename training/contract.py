"""The data contract of ``marts.training_bars``, checked with Great Expectations before any training.

Training refuses a mart that breaks it: :func:`check_mart_contract` raises :class:`ContractViolation` naming every
failed expectation. Great Expectations reads the table as the ``trainer`` role (the connection URL carries
``options=-c role=trainer``), and the check confirms that before validating.

Expectations (each has a description, which is the name a failure is reported under):

* (precondition, checked before Great Expectations runs) the table exists and trainer may read it;
* the contract's columns exist (extra columns are allowed and ignored) and have their types
  (text symbol and split, date session_date, double precision for everything else);
* no nulls in keys, prices, features and split; the target may be null only on a symbol's last session;
* every number finite (PostgreSQL double precision admits NaN and +-Infinity); prices > 0, volume >= 0;
* (symbol, session_date) unique;
* split in {train, validation, test}, and all three present;
* splits in date order (last train session < first validation session <= last validation < first test);
* at least ``embargo_sessions`` exchange sessions strictly between consecutive splits (counted on the
  exchange_calendars calendar, because the embargo rows themselves are not in the mart);
* every symbol has at least ``min_sessions_per_split`` sessions in each split.
"""

from __future__ import annotations

import itertools
import logging
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from market_calendar import EXCHANGE, non_session_weekdays
from training.config import SPLITS
from training.mart import KEY_COLUMNS, MART_TABLE, PRICE_COLUMNS, SPLIT_COLUMN
from warehouse_db import schemas
from warehouse_db.errors import WarehouseNotProvisioned
from warehouse_db.settings import ConnectionSettings

logger = logging.getLogger(__name__)

DOUBLE = "DOUBLE PRECISION"
COLUMN_TYPES = {"symbol": "TEXT", "session_date": "DATE", SPLIT_COLUMN: "TEXT"}
"""PostgreSQL type names as Great Expectations reports them; every column not listed is DOUBLE PRECISION."""
FINITE_LIMIT = 1e300


class ContractViolation(Exception):
    """The mart broke its contract; ``failures`` names each failed expectation with what was observed."""

    def __init__(self, failures: Sequence[str]) -> None:
        self.failures = list(failures)
        listing = "\n".join(f"  - {failure}" for failure in self.failures)
        super().__init__(
            f"{schemas.MARTS}.{MART_TABLE} breaks its data contract ({len(self.failures)} failed "
            f"expectation{'s' if len(self.failures) != 1 else ''}); training refused:\n{listing}"
        )


@dataclass(frozen=True)
class ContractTerms:
    """The parameters of the contract: the columns come from the mart YAML, the numbers from the config."""

    feature_names: tuple[str, ...]
    target: str
    embargo_sessions: int
    min_sessions_per_split: int

    @property
    def numeric_columns(self) -> list[str]:
        return [*PRICE_COLUMNS, *self.feature_names, self.target]

    @property
    def columns(self) -> list[str]:
        return [*KEY_COLUMNS, *self.numeric_columns, SPLIT_COLUMN]


def _split_bounds_sql(terms: ContractTerms) -> str:
    """Consecutive split pairs with their boundary dates and the exchange sessions strictly between them.

    Queries with a JOIN get ``{batch}`` from GX as a bare subquery, which PostgreSQL before 16 accepts only
    with an alias: every ``{batch}`` in a joining query carries one (tested on PostgreSQL 15).
    """
    holidays = ", ".join(f"'{day}'" for day in non_session_weekdays())
    pairs = ", ".join(f"('{earlier}', '{later}')" for earlier, later in itertools.pairwise(SPLITS))
    return f"""
        with bounds as (
            select split, min(session_date) as first_session, max(session_date) as last_session
            from {{batch}} as mart_rows
            group by split
        ),
        consecutive as (
            select e.split as earlier_split, l.split as later_split,
                   e.last_session as earlier_last_session, l.first_session as later_first_session
            from bounds e
            join bounds l on (e.split, l.split) in ({pairs})
        )
        select c.*,
               (select count(*)
                from generate_series(c.earlier_last_session + 1, c.later_first_session - 1, interval '1 day') as d
                where extract(isodow from d) < 6 and d::date <> all (array[{holidays}]::date[])
               ) as sessions_between
        from consecutive c
    """


def build_expectations(terms: ContractTerms) -> list[Any]:
    """The contract as a list of Great Expectations expectations, each named by its description."""
    import great_expectations.expectations as gxe

    expectations: list[Any] = [
        gxe.ExpectTableColumnsToMatchSet(
            column_set=terms.columns, exact_match=False, description="the contract's columns exist"
        )
    ]
    for column in terms.columns:
        expected_type = COLUMN_TYPES.get(column, DOUBLE)
        expectations.append(
            gxe.ExpectColumnValuesToBeOfType(
                column=column, type_=expected_type, description=f"{column} is {expected_type.lower()}"
            )
        )
    for column in [*KEY_COLUMNS, *PRICE_COLUMNS, *terms.feature_names, SPLIT_COLUMN]:
        expectations.append(gxe.ExpectColumnValuesToNotBeNull(column=column, description=f"{column} has no nulls"))
    expectations.append(
        gxe.UnexpectedRowsExpectation(
            unexpected_rows_query=f"""
                select symbol, session_date from (
                    select symbol, session_date, {terms.target},
                           max(session_date) over (partition by symbol) as last_session
                    from {{batch}}
                ) t
                where {terms.target} is null and session_date < last_session
            """,
            description=f"{terms.target} is null only on a symbol's last session",
        )
    )
    for column in terms.numeric_columns:
        expectations.append(
            gxe.ExpectColumnValuesToBeBetween(
                column=column, min_value=-FINITE_LIMIT, max_value=FINITE_LIMIT, description=f"{column} is finite"
            )
        )
    for column in ("open", "high", "low", "close"):
        expectations.append(
            gxe.ExpectColumnValuesToBeBetween(
                column=column, min_value=0, strict_min=True, description=f"{column} is positive"
            )
        )
    expectations.append(gxe.ExpectColumnValuesToBeBetween(column="volume", min_value=0, description="volume >= 0"))
    expectations += [
        gxe.ExpectCompoundColumnsToBeUnique(
            column_list=list(KEY_COLUMNS), description="(symbol, session_date) is unique"
        ),
        gxe.ExpectColumnValuesToBeInSet(
            column=SPLIT_COLUMN, value_set=list(SPLITS), description=f"split is one of {', '.join(SPLITS)}"
        ),
        gxe.ExpectColumnDistinctValuesToContainSet(
            column=SPLIT_COLUMN, value_set=list(SPLITS), description="every split is present"
        ),
        gxe.UnexpectedRowsExpectation(
            unexpected_rows_query=f"""
                select * from ({_split_bounds_sql(terms)}) pairs
                where later_first_session <= earlier_last_session
            """,
            description="splits are contiguous date ranges in order: train < validation < test",
        ),
        gxe.UnexpectedRowsExpectation(
            unexpected_rows_query=f"""
                select * from ({_split_bounds_sql(terms)}) pairs
                where sessions_between < {int(terms.embargo_sessions)}
            """,
            description=(
                f"at least {terms.embargo_sessions} {EXCHANGE} sessions of embargo between consecutive splits"
            ),
        ),
        gxe.UnexpectedRowsExpectation(
            unexpected_rows_query=f"""
                select s.symbol, p.split, count(b.symbol) as sessions
                from (select distinct symbol from {{batch}} as mart_rows) s
                cross join (values {", ".join(f"('{split}')" for split in SPLITS)}) as p(split)
                left join {{batch}} b on b.symbol = s.symbol and b.split = p.split
                group by s.symbol, p.split
                having count(b.symbol) < {int(terms.min_sessions_per_split)}
            """,
            description=f"every symbol has at least {terms.min_sessions_per_split} sessions in each split",
        ),
    ]
    return expectations


def gx_connection_string(
    settings: ConnectionSettings, role: str = schemas.TRAINER_ROLE, schema: str = schemas.MARTS
) -> str:
    """SQLAlchemy URL for Great Expectations that acts as ``role`` and finds tables in ``schema``.

    libpq's ``options=-c role=... -c search_path=...`` applies both at connection start (like SET ROLE; and GX 1.24
    deprecates naming the schema on the asset). Great Expectations rejects a URL without a host, so a Unix-socket
    URL gets ``localhost`` in the netloc while the socket directory stays in the ``host`` query parameter, which
    libpq prefers.
    """
    from sqlalchemy.engine import make_url

    url = make_url(settings.sqlalchemy_url(role))  # role's own login where one is configured
    options = " ".join(
        part for part in (url.query.get("options"), f"-c role={role}", f"-c search_path={schema}") if part
    )
    url = url.update_query_dict({"options": options})
    if not url.host:
        url = url.set(host="localhost")
    return url.render_as_string(hide_password=False)


def _plain_rows(rows: Sequence[Any]) -> str:
    """Short text for a few offending rows/values (dates and numbers as their str, not their repr)."""

    def plain(value: Any) -> str:
        if isinstance(value, dict):
            return "{" + ", ".join(f"{key}: {plain(item)}" for key, item in value.items()) + "}"
        return str(value)

    return "[" + ", ".join(plain(row) for row in rows) + "]"


def _describe_failure(result: Any) -> str:
    config = result.expectation_config
    name = config.description or config.type
    details: list[str] = []
    outcome = result.result or {}
    if outcome.get("unexpected_count"):
        details.append(f"unexpected rows: {outcome['unexpected_count']}")
    rows = (outcome.get("details") or {}).get("unexpected_rows")
    if rows:
        details.append(f"offending rows: {len(rows)}, e.g. {_plain_rows(rows[:3])}")
    elif "observed_value" in outcome and not outcome.get("unexpected_count"):
        details.append(f"observed {outcome['observed_value']}")
    if outcome.get("partial_unexpected_list"):
        details.append(f"e.g. {_plain_rows(outcome['partial_unexpected_list'][:3])}")
    mismatched = (outcome.get("details") or {}).get("mismatched")
    if mismatched:
        details.append(f"mismatched {mismatched}")
    if outcome.get("partial_missing_list"):
        details.append(f"missing {outcome['partial_missing_list']}")
    exception = result.exception_info or {}
    messages = (
        [exception.get("exception_message")]
        if "exception_message" in exception
        else [info.get("exception_message") for info in exception.values() if isinstance(info, dict)]
    )
    messages = [message for message in messages if message]
    if messages:
        details.append(f"error: {messages[0].strip().splitlines()[-1]}")
    return f"{name} [{config.type}]" + (f": {'; '.join(details)}" if details else "")


def _quiet_gx_logging() -> None:
    """Great Expectations' INFO lines are internal chatter (temporary directories, decorator registrations)."""
    names = [name for name in logging.root.manager.loggerDict if name.startswith("great_expectations")]
    for name in ["great_expectations", *names]:
        logging.getLogger(name).setLevel(logging.WARNING)


@dataclass(frozen=True)
class ContractReport:
    passed: list[str]
    failed: list[str]


def check_mart_contract(settings: ConnectionSettings, terms: ContractTerms) -> ContractReport:
    """Validate ``marts.training_bars`` as trainer; raise ContractViolation listing every failed expectation."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")  # no usage statistics, ever (there is no network here)
    _quiet_gx_logging()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import great_expectations as gx
        from great_expectations.data_context.types.base import ProgressBarsConfig
    import sqlalchemy

    _quiet_gx_logging()  # again: some of its modules set their own loggers to INFO when imported
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    datasource = context.data_sources.add_postgres("warehouse", connection_string=gx_connection_string(settings))
    engine = datasource.get_engine()
    try:
        with engine.connect() as connection:
            reader = connection.execute(sqlalchemy.text("select current_user")).scalar_one()
            exists, readable = connection.execute(
                sqlalchemy.text(
                    "select to_regclass(:table) is not null, "
                    "to_regclass(:table) is not null and has_table_privilege(to_regclass(:table), 'select')"
                ),
                {"table": f"{schemas.MARTS}.{MART_TABLE}"},
            ).one()
        if reader != schemas.TRAINER_ROLE:
            raise RuntimeError(f"the contract check must read as {schemas.TRAINER_ROLE!r}, but reads as {reader!r}")
        if not exists:  # nothing built yet: a warehouse problem (exit 4), not a broken contract
            raise WarehouseNotProvisioned.missing_relation(f"{schemas.MARTS}.{MART_TABLE}", settings.describe())
        if not readable:
            raise ContractViolation(
                [
                    f"{schemas.MARTS}.{MART_TABLE} exists and {schemas.TRAINER_ROLE} may read it [precondition]: "
                    f"it does not, in {settings.describe()} (build it first: make dbt-build)"
                ]
            )
        asset = datasource.add_table_asset(MART_TABLE, table_name=MART_TABLE)  # found via search_path
        batch_definition = asset.add_batch_definition_whole_table("whole table")
        suite = context.suites.add(gx.ExpectationSuite(name=f"{schemas.MARTS}.{MART_TABLE} contract"))
        for expectation in build_expectations(terms):
            suite.add_expectation(expectation)
        validation = context.validation_definitions.add(
            gx.ValidationDefinition(name="training contract", data=batch_definition, suite=suite)
        )
        # COMPLETE: custom-SQL expectations report their offending rows only in this format (it costs nothing
        # when the mart is clean; a failure's report is cut to a few examples below).
        outcome = validation.run(result_format={"result_format": "COMPLETE", "partial_unexpected_count": 3})
    finally:
        engine.dispose()  # the session would otherwise stay open until garbage collection
    passed = [r.expectation_config.description for r in outcome.results if r.success]
    failed = [_describe_failure(r) for r in outcome.results if not r.success]
    if failed:
        raise ContractViolation(failed)
    logger.info(
        "%s.%s meets its data contract (%d expectations, read as %s)", schemas.MARTS, MART_TABLE, len(passed), reader
    )
    return ContractReport(passed=passed, failed=failed)


__all__ = ["ContractReport", "ContractTerms", "ContractViolation", "check_mart_contract"]
