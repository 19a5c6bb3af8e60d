"""The data contract of ``marts.training_bars`` and its walk-forward folds, checked with Great Expectations before
any training.

Training refuses a mart that breaks it: :func:`check_mart_contract` raises :class:`ContractViolation` naming every
failed expectation. Great Expectations reads the tables as the ``trainer`` role (the connection URL carries
``options=-c role=trainer``), and the check confirms that before validating.

Preconditions, checked before Great Expectations runs:

* the mart, ``marts.walk_forward_folds`` and ``marts.walk_forward_plan`` exist and trainer may read them;
* the history holds every planned fold (``walk_forward_plan``); otherwise :class:`HistoryTooShort` says how many
  folds and sessions there are and how many months of bars to fetch, unless the mart is empty although
  ``marts.symbol_coverage`` holds series longer than the warm-up (quote bars, without volume): then the refusal
  names them, since more bars would not help.

``marts.training_bars`` (each expectation has a description, which is the name a failure is reported under):

* the contract's columns exist (extra columns are allowed and ignored) and have their types
  (text symbol, date session_date, double precision for everything else);
* no nulls in keys, prices and features; the target may be null only on a symbol's last session (the prices are
  the columns with ``meta.role: price`` in the mart YAML);
* every number finite (PostgreSQL double precision admits NaN and +-Infinity), and every feature within +-1e150 (the
  scaler squares it; the failure names symbol, session and feature); open, high, low and close > 0 and
  volume >= 0, each where the YAML declares it a price (open and close always are);
* (symbol, session_date) unique.

``marts.walk_forward_folds``:

* its columns exist with their types, no nulls, fold_id unique, at least one fold;
* inside every fold the splits are in date order: train < validation < test (so no test session is in the fold's
  train or validation split);
* the purge covers the target's horizon (``min_purge_sessions``) and the embargo is at least
  ``min_embargo_sessions``; at least purge + embargo exchange sessions lie strictly between train and validation and
  between validation and test (counted on the exchange calendar: the mart has rows there, the fold does not);
* test splits do not overlap and follow fold_id order;
* every split holds at least ``min_sessions_per_split`` sessions of the mart.
"""

from __future__ import annotations

import logging
import math
import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from market_calendar import EXCHANGE, non_session_weekdays
from training.folds import FOLD_COLUMNS, FOLDS_TABLE, SPLITS
from training.mart import KEY_COLUMNS, MART_TABLE
from warehouse_db import schemas
from warehouse_db.errors import WarehouseNotProvisioned
from warehouse_db.settings import ConnectionSettings

logger = logging.getLogger(__name__)

PLAN_TABLE = "walk_forward_plan"
DOUBLE = "DOUBLE PRECISION"
COLUMN_TYPES = {"symbol": "TEXT", "session_date": "DATE"}
"""PostgreSQL type names as Great Expectations reports them; every mart column not listed is DOUBLE PRECISION."""
FOLD_COLUMN_TYPES = {name: "DATE" if name.endswith(("_start", "_end")) else "INTEGER" for name in FOLD_COLUMNS}
FINITE_LIMIT = 1e300
FEATURE_LIMIT = "1e150"
"""The largest feature magnitude the job can use: the feature scaler squares each value, and (1e155)^2 is infinite in
double precision, which zeroes the feature for the whole fold. dbt's features stay far below it (staging bounds prices
within 1e-8 .. 1e15); a mart built before those bounds, or elsewhere, may not."""
SESSIONS_PER_MONTH = 21
"""About 252 exchange sessions a year: how the advice on how much history to fetch counts months."""


class ContractViolation(Exception):
    """The mart broke its contract; ``failures`` names each failed expectation with what was observed."""

    def __init__(self, failures: Sequence[str]) -> None:
        self.failures = list(failures)
        listing = "\n".join(f"  - {failure}" for failure in self.failures)
        super().__init__(
            f"{schemas.MARTS}.{MART_TABLE} breaks its data contract ({len(self.failures)} failed "
            f"expectation{'s' if len(self.failures) != 1 else ''}); training refused:\n{listing}"
        )


class HistoryTooShort(ContractViolation):
    """The mart's history holds fewer walk-forward folds than planned; the one failure says what to fetch."""


@dataclass(frozen=True)
class ContractTerms:
    """The parameters of the contract: the columns come from the mart YAML, the numbers from the config."""

    feature_names: tuple[str, ...]
    target: str
    price_columns: tuple[str, ...]
    min_sessions_per_split: int
    """Every train, validation and test split must hold this many sessions of the mart (window + episode steps)."""
    min_purge_sessions: int = 1
    """The target's horizon: a fold's purge must be at least this (MartSchema.target_horizon_sessions)."""
    min_embargo_sessions: int = 0

    @property
    def numeric_columns(self) -> list[str]:
        return [*self.price_columns, *self.feature_names, self.target]

    @property
    def columns(self) -> list[str]:
        return [*KEY_COLUMNS, *self.numeric_columns]


DAILY_BAR_SIZE = "1 day"
"""The bars the mart is built from: the only daily_bar_size dbt accepts (macros/require_daily_bar_size.sql). The
hint to fetch more names it, as `make ingest` would otherwise fetch the bar size in .env's IBKR_BAR_SIZE."""


def months_to_fetch(plan: Mapping[str, Any]) -> int:
    """Months of daily bars that hold every planned fold: the sessions they need plus the warm-up, and a month
    of margin for holidays."""
    sessions = int(plan["sessions_needed"]) + int(plan["warmup_sessions"])
    return math.ceil(sessions / SESSIONS_PER_MONTH) + 1


def history_too_short_message(plan: Mapping[str, Any]) -> str:
    """One line for a walk_forward_plan row whose history holds fewer folds than planned."""
    gap = int(plan["purge_sessions"]) + int(plan["embargo_sessions"])
    months = months_to_fetch(plan)
    span = f" ({plan['first_session']} … {plan['last_session']})" if plan.get("first_session") else ""
    return (
        f"the history is too short for the walk-forward folds: {schemas.MARTS}.{FOLDS_TABLE} holds "
        f"{plan['folds_laid_out']} of the {plan['folds_planned']} planned folds, and the mart has "
        f"{plan['history_sessions']} sessions{span}; the planned folds need {plan['sessions_needed']} "
        f"({plan['folds_planned']} x {plan['test_sessions']} test + 2 x {gap} purge and embargo + "
        f"{plan['validation_sessions']} validation + {plan['min_train_sessions']} train) after a "
        f"{plan['warmup_sessions']}-session warm-up. Fetch at least {months} months of daily bars "
        f"""(make ingest ARGS="--months {months} --bar-size '{DAILY_BAR_SIZE}'") and rebuild (make dbt-build), """
        "or plan fewer or shorter folds "
        "(dbt vars walk_forward_folds, walk_forward_test_sessions, walk_forward_min_train_sessions)"
    )


COVERAGE_TABLE = "symbol_coverage"
QUOTE_BARS = "MIDPOINT, BID, ASK, BID_ASK"


def empty_mart_message(plan: Mapping[str, Any], series: Sequence[Mapping[str, Any]]) -> str:
    """One line for a mart without a row although ``series`` (rows of marts.symbol_coverage) hold more sessions than
    the warm-up: fetching more bars would not fill it."""
    named = ", ".join(
        f"{row['symbol']} ({row['sessions_present']} sessions of {row['bar_size']} {row['what_to_show']} bars)"
        for row in series[:3]
    )
    more = f" and {len(series) - 3} more" if len(series) > 3 else ""
    return (
        f"{schemas.MARTS}.{MART_TABLE} is empty, although {schemas.MARTS}.{COVERAGE_TABLE} counts more sessions than "
        f"the {plan['warmup_sessions']}-session warm-up for {named}{more}: none of their rows after the warm-up has "
        "every feature, or the mart is built from other bar settings (dbt vars daily_bar_size, what_to_show, "
        f"use_rth). Quote bars ({QUOTE_BARS}) carry no volume, and a row without volume_zscore_20 is left out of the "
        "mart: build it from TRADES or ADJUSTED_LAST bars"
    )


def _series_the_mart_left_out(connection: Any, warmup_sessions: int) -> list[Mapping[str, Any]]:
    """Series of marts.symbol_coverage with more sessions than the warm-up and no mart row, most sessions first
    (none where the view is missing or trainer may not read it: a synthetic mart has none)."""
    import sqlalchemy

    table = f"{schemas.MARTS}.{COVERAGE_TABLE}"
    readable = connection.execute(
        sqlalchemy.text(
            "select to_regclass(:table) is not null and has_table_privilege(to_regclass(:table), 'select')"
        ),
        {"table": table},
    ).scalar_one()
    if not readable:
        return []
    query = (
        f"select symbol, bar_size, what_to_show, sessions_present from {table} "
        "where training_rows = 0 and sessions_present > :warmup order by sessions_present desc, symbol"
    )
    return list(connection.execute(sqlalchemy.text(query), {"warmup": warmup_sessions}).mappings().all())


def _sessions_between_sql(earlier: str, later: str) -> str:
    """SQL: the exchange sessions strictly between the dates ``earlier`` and ``later`` (SQL expressions)."""
    holidays = ", ".join(f"'{day}'" for day in non_session_weekdays())
    # Dates plus whole days, never timestamps: a timestamptz series steps through the session's TimeZone, where a day
    # can be missing (Pacific/Apia skipped 2011-12-30, an NYSE session) and PGTZ beats the engine's options.
    return f"""(select count(*)
                from generate_series(1, {later} - {earlier} - 1) as n
                where extract(isodow from {earlier} + n) < 6 and {earlier} + n <> all (array[{holidays}]::date[]))"""


def _column(name: str) -> str:
    """``name`` as a quoted SQL identifier: the YAML's names are read as written (the mart reader quotes them too)."""
    return '"' + name.replace('"', '""') + '"'


def _text(value: str) -> str:
    """``value`` as an SQL string literal."""
    return "'" + value.replace("'", "''") + "'"


def build_expectations(terms: ContractTerms) -> list[Any]:
    """The contract of ``marts.training_bars`` as Great Expectations expectations, each named by its description."""
    return [
        *_column_expectations(terms),
        _target_null_only_on_last_session(terms),
        *_numbers_finite(terms),
        _features_within_limit(terms),
        *_price_signs(terms),
        _one_row_per_symbol_session(),
    ]


def _column_expectations(terms: ContractTerms) -> list[Any]:
    """The contract's columns exist, each of its type; the key, price and feature columns without nulls."""
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
    for column in [*KEY_COLUMNS, *terms.price_columns, *terms.feature_names]:
        expectations.append(gxe.ExpectColumnValuesToNotBeNull(column=column, description=f"{column} has no nulls"))
    return expectations


def _target_null_only_on_last_session(terms: ContractTerms) -> Any:
    import great_expectations.expectations as gxe

    return gxe.UnexpectedRowsExpectation(
        unexpected_rows_query=f"""
                select symbol, session_date from (
                    select symbol, session_date, {_column(terms.target)} as target,
                           max(session_date) over (partition by symbol) as last_session
                    from {{batch}}
                ) t
                where target is null and session_date < last_session
            """,
        description=f"{terms.target} is null only on a symbol's last session",
    )


def _numbers_finite(terms: ContractTerms) -> list[Any]:
    import great_expectations.expectations as gxe

    return [
        gxe.ExpectColumnValuesToBeBetween(
            column=column, min_value=-FINITE_LIMIT, max_value=FINITE_LIMIT, description=f"{column} is finite"
        )
        for column in terms.numeric_columns
    ]


def _features_within_limit(terms: ContractTerms) -> Any:
    # One expectation for every feature, so that a failure names the symbol, session and feature (GX's per-column
    # range check shows values only). NaN and infinity are the "is finite" expectations' to report.
    import great_expectations.expectations as gxe

    features = ", ".join(map(_text, terms.feature_names))
    values = ", ".join(map(_column, terms.feature_names))
    return gxe.UnexpectedRowsExpectation(
        unexpected_rows_query=f"""
                select symbol, session_date, feature, value from (
                    select symbol, session_date, unnest(array[{features}]) as feature,
                           unnest(array[{values}]::double precision[]) as value
                    from {{batch}}
                ) t
                where abs(value) > {FEATURE_LIMIT} and abs(value) < 'infinity'
                order by symbol, session_date, feature
            """,
        description=f"every feature within ±{FEATURE_LIMIT} (the feature scaler squares it)",
    )


def _price_signs(terms: ContractTerms) -> list[Any]:
    # Sign rules for the usual price columns, where the YAML declares them: its price columns are the ones the job
    # reads (open and close always: read_mart_schema demands them), so a column it names otherwise is not demanded.
    import great_expectations.expectations as gxe

    expectations: list[Any] = [
        gxe.ExpectColumnValuesToBeBetween(
            column=column, min_value=0, strict_min=True, description=f"{column} is positive"
        )
        for column in ("open", "high", "low", "close")
        if column in terms.price_columns
    ]
    if "volume" in terms.price_columns:
        expectations.append(gxe.ExpectColumnValuesToBeBetween(column="volume", min_value=0, description="volume >= 0"))
    return expectations


def _one_row_per_symbol_session() -> Any:
    import great_expectations.expectations as gxe

    return gxe.ExpectCompoundColumnsToBeUnique(
        column_list=list(KEY_COLUMNS), description="(symbol, session_date) is unique"
    )


def build_fold_expectations(terms: ContractTerms) -> list[Any]:
    """The contract of ``marts.walk_forward_folds`` as Great Expectations expectations.

    GX gives ``{batch}`` an alias of its own in a query without a JOIN, and a bare subquery in one with a JOIN,
    which PostgreSQL before 16 accepts only with an alias: every ``{batch}`` in a joining query carries one (tested
    on PostgreSQL 15), the others none.
    """
    return [
        *_fold_column_expectations(),
        *_fold_table_expectations(terms),
        _splits_in_date_order(),
        _purge_and_embargo_between_splits(),
        _test_splits_in_fold_order(),
        _splits_hold_enough_sessions(terms),
    ]


def _fold_column_expectations() -> list[Any]:
    """The fold columns exist, each of its type and without nulls."""
    import great_expectations.expectations as gxe

    expectations: list[Any] = [
        gxe.ExpectTableColumnsToMatchSet(
            column_set=list(FOLD_COLUMNS), exact_match=False, description="the fold columns exist"
        )
    ]
    for column in FOLD_COLUMNS:
        expected_type = FOLD_COLUMN_TYPES[column]
        expectations.append(
            gxe.ExpectColumnValuesToBeOfType(
                column=column, type_=expected_type, description=f"fold {column} is {expected_type.lower()}"
            )
        )
        expectations.append(gxe.ExpectColumnValuesToNotBeNull(column=column, description=f"fold {column} has no nulls"))
    return expectations


def _fold_table_expectations(terms: ContractTerms) -> list[Any]:
    """At least one fold, each id once, and every fold's purge and embargo at least what the terms demand."""
    import great_expectations.expectations as gxe

    return [
        gxe.ExpectTableRowCountToBeBetween(min_value=1, description="there is at least one fold"),
        gxe.ExpectColumnValuesToBeUnique(column="fold_id", description="fold_id is unique"),
        gxe.ExpectColumnValuesToBeBetween(
            column="purge_sessions",
            min_value=terms.min_purge_sessions,
            description=f"every purge covers the target's horizon ({terms.min_purge_sessions} session"
            f"{'s' if terms.min_purge_sessions != 1 else ''})",
        ),
        gxe.ExpectColumnValuesToBeBetween(
            column="embargo_sessions",
            min_value=terms.min_embargo_sessions,
            description=f"every embargo is at least {terms.min_embargo_sessions} sessions",
        ),
    ]


def _splits_in_date_order() -> Any:
    import great_expectations.expectations as gxe

    return gxe.UnexpectedRowsExpectation(
        unexpected_rows_query="""
                select * from {batch}
                where not (train_start <= train_end and train_end < validation_start
                           and validation_start <= validation_end and validation_end < test_start
                           and test_start <= test_end)
            """,
        description="inside every fold: train < validation < test, so no test session is trained or validated on",
    )


def _purge_and_embargo_between_splits() -> Any:
    """The fold's own purge + embargo, counted in exchange sessions (the mart's rows there are not the fold's)."""
    import great_expectations.expectations as gxe

    return gxe.UnexpectedRowsExpectation(
        unexpected_rows_query=f"""
                select * from (
                    select *,
                           {_sessions_between_sql("train_end", "validation_start")} as before_validation,
                           {_sessions_between_sql("validation_end", "test_start")} as before_test
                    from {{batch}}
                ) gaps
                where before_validation < purge_sessions + embargo_sessions
                   or before_test < purge_sessions + embargo_sessions
            """,
        description=(
            f"purge + embargo {EXCHANGE} sessions lie between train and validation and between validation and test"
        ),
    )


def _test_splits_in_fold_order() -> Any:
    import great_expectations.expectations as gxe

    return gxe.UnexpectedRowsExpectation(
        unexpected_rows_query="""
                select earlier.fold_id as earlier_fold, later.fold_id as later_fold,
                       earlier.test_start as earlier_test_start, earlier.test_end as earlier_test_end,
                       later.test_start as later_test_start, later.test_end as later_test_end
                from {batch} as earlier
                join {batch} as later on earlier.fold_id < later.fold_id
                where later.test_start <= earlier.test_end
            """,
        description="test splits do not overlap and follow fold_id order",
    )


def _splits_hold_enough_sessions(terms: ContractTerms) -> Any:
    """Sessions counted in the mart, so that a split over dates the mart has no rows for holds none."""
    import great_expectations.expectations as gxe

    splits = " union all ".join(
        f"select fold_id, '{split}' as split, {split}_start as split_start, {split}_end as split_end from {{batch}} as f"
        for split in SPLITS
    )
    return gxe.UnexpectedRowsExpectation(
        unexpected_rows_query=f"""
                select splits.fold_id, splits.split, count(mart.session_date) as sessions
                from ({splits}) as splits
                left join (select distinct session_date from {MART_TABLE}) as mart
                    on mart.session_date between splits.split_start and splits.split_end
                group by splits.fold_id, splits.split
                having count(mart.session_date) < {int(terms.min_sessions_per_split)}
            """,
        description=f"every fold's train, validation and test splits hold at least "
        f"{terms.min_sessions_per_split} sessions of the mart",
    )


def gx_connection_string(
    settings: ConnectionSettings, role: str = schemas.TRAINER_ROLE, schema: str = schemas.MARTS
) -> str:
    """SQLAlchemy URL for Great Expectations that acts as ``role`` and finds tables in ``schema``.

    libpq's ``options=-c role=... -c search_path=...`` applies both at connection start (like SET ROLE; and GX 1.24
    deprecates naming the schema on the asset). Great Expectations rejects a URL without a host, so a Unix-socket
    URL gets ``localhost`` in the netloc while the socket directory stays in the ``host`` query parameter, which
    libpq prefers.
    """
    from sqlalchemy.engine import URL, make_url

    url = make_url(settings.sqlalchemy_url(role))  # role's own login where one is configured
    options = " ".join(
        part for part in (url.query.get("options"), f"-c role={role}", f"-c search_path={schema}") if part
    )
    url = url.update_query_dict({"options": options})
    if not url.host:
        url = url.set(host="localhost")
    # SQLAlchemy leaves a space (and `+`) unencoded in the login part and a space or `/` in the database name, and
    # Great Expectations then rejects the URL ("userinfo required", "extra characters found after valid URL": a
    # database named `Trading DB`): encode the user, the password and the database whole, so that any name works.
    rest = URL.create(url.drivername, host=url.host, port=url.port, query=url.query).render_as_string()
    server, question, query = rest.partition("?")
    userinfo = quote(url.username or "", safe="")
    if url.password is not None:
        userinfo += ":" + quote(url.password, safe="")
    database = "/" + quote(url.database, safe="") if url.database else ""
    return server.replace("://", f"://{userinfo}@", 1) + database + question + query


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


def _check_preconditions(connection: Any, settings: ConnectionSettings) -> None:
    """Trainer reads, the three tables are there, and the history holds every planned fold."""
    import sqlalchemy

    reader = connection.execute(sqlalchemy.text("select current_user")).scalar_one()
    if reader != schemas.TRAINER_ROLE:
        raise RuntimeError(f"the contract check must read as {schemas.TRAINER_ROLE!r}, but reads as {reader!r}")
    where = settings.for_role(schemas.TRAINER_ROLE).describe()  # the trainer's login, where it has its own
    for table in (MART_TABLE, FOLDS_TABLE, PLAN_TABLE):
        # From the catalog, which everyone reads: to_regclass failed with "permission denied for schema marts" (a
        # traceback) where a dbt run stopped before its end (say, before anything was ingested) had created the schema
        # without the trainer's USAGE, which its last step grants.
        exists, readable = connection.execute(
            sqlalchemy.text(
                "select c.oid is not null, c.oid is not null and has_schema_privilege(n.oid, 'usage') "
                "and has_table_privilege(c.oid, 'select') "
                "from (select 1) as one left join pg_namespace as n on n.nspname = :schema "
                "left join pg_class as c on c.relnamespace = n.oid and c.relname = :table"
            ),
            {"schema": schemas.MARTS, "table": table},
        ).one()
        if not exists:  # nothing built yet: a warehouse problem (exit 4), not a broken contract
            raise WarehouseNotProvisioned.missing_relation(f"{schemas.MARTS}.{table}", where)
        if not readable:
            raise ContractViolation(
                [
                    f"{schemas.MARTS}.{table} exists and {schemas.TRAINER_ROLE} may read it [precondition]: "
                    f"it does not, in {where} (build it first: make dbt-build)"
                ]
            )
    plans = connection.execute(sqlalchemy.text(f"select * from {schemas.MARTS}.{PLAN_TABLE}")).mappings().all()
    if len(plans) != 1:
        raise ContractViolation([f"{schemas.MARTS}.{PLAN_TABLE} has one row [precondition]: it has {len(plans)}"])
    plan = plans[0]
    if plan["folds_laid_out"] < plan["folds_planned"] or plan["folds_laid_out"] < 1:
        if not plan["history_sessions"] and (
            left_out := _series_the_mart_left_out(connection, plan["warmup_sessions"])
        ):
            raise ContractViolation([f"{empty_mart_message(plan, left_out)} [precondition]"])
        raise HistoryTooShort([f"{history_too_short_message(plan)} [precondition]"])


def check_mart_contract(settings: ConnectionSettings, terms: ContractTerms) -> ContractReport:
    """Validate ``marts.training_bars`` and its folds as trainer; raise ContractViolation listing every failure."""
    gx, context = quiet_ephemeral_gx_context()
    datasource = context.data_sources.add_postgres("warehouse", connection_string=gx_connection_string(settings))
    engine = datasource.get_engine()
    results: list[Any] = []
    try:
        with engine.connect() as connection:
            _check_preconditions(connection, settings)
        for table, expectations in (
            (MART_TABLE, build_expectations(terms)),
            (FOLDS_TABLE, build_fold_expectations(terms)),
        ):
            results += _validate_table(gx, context, datasource, table, expectations)
    finally:
        engine.dispose()  # the session would otherwise stay open until garbage collection
    return _passed_or_refused(results)


def quiet_ephemeral_gx_context() -> tuple[Any, Any]:
    """(the great_expectations module, a context that keeps nothing on disk), with no usage statistics, progress
    bars or INFO lines."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")  # no usage statistics, ever (there is no network here)
    _quiet_gx_logging()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import great_expectations as gx
        from great_expectations.data_context.types.base import ProgressBarsConfig

    _quiet_gx_logging()  # again: some of its modules set their own loggers to INFO when imported
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    return gx, context


def _validate_table(gx: Any, context: Any, datasource: Any, table: str, expectations: Sequence[Any]) -> list[Any]:
    """Great Expectations' result for each of ``expectations`` on the whole of ``table``."""
    asset = datasource.add_table_asset(table, table_name=table)  # found via search_path
    batch_definition = asset.add_batch_definition_whole_table("whole table")
    # Expectations added to a suite the context holds are each saved with the whole suite re-serialised (about 2 s of
    # the check for the mart's 90): the suite is filled first and handed to the context once.
    suite = gx.ExpectationSuite(name=f"{schemas.MARTS}.{table} contract")
    for expectation in expectations:
        suite.add_expectation(expectation)
    suite = context.suites.add(suite)
    validation = context.validation_definitions.add(
        gx.ValidationDefinition(name=f"{table} contract", data=batch_definition, suite=suite)
    )
    # COMPLETE: custom-SQL expectations report their offending rows only in this format (it costs nothing when the
    # mart is clean; a failure's report is cut to a few examples by _describe_failure).
    outcome = validation.run(result_format={"result_format": "COMPLETE", "partial_unexpected_count": 3})
    return list(outcome.results)


def _passed_or_refused(results: Sequence[Any]) -> ContractReport:
    """The report of a contract met (and its log line); ContractViolation naming every failure otherwise."""
    passed = [r.expectation_config.description for r in results if r.success]
    failed = [_describe_failure(r) for r in results if not r.success]
    if failed:
        raise ContractViolation(failed)
    logger.info(
        "%s.%s and its folds meet the data contract (%d expectations, read as %s)",
        schemas.MARTS,
        MART_TABLE,
        len(passed),
        schemas.TRAINER_ROLE,
    )
    return ContractReport(passed=passed, failed=failed)


__all__ = [
    "ContractReport",
    "ContractTerms",
    "ContractViolation",
    "HistoryTooShort",
    "build_expectations",
    "build_fold_expectations",
    "check_mart_contract",
]
