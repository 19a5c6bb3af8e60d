-- Symbols with gaps, bad rows or corrections, worst first: gaps not recorded in
-- warehouse/seeds/known_missing_sessions.csv (sessions_missing - sessions_known_missing) first. Run: `dbt compile --select coverage_gaps`,
-- then the SQL in target/compiled/warehouse/warehouse/analyses/coverage_gaps.sql (or paste it as is:
-- analysts read the marts schema directly).
select
    symbol,
    bar_size,
    what_to_show,
    use_rth,
    first_session,
    last_session,
    sessions_expected,
    sessions_missing,
    sessions_known_missing,
    round(100.0 * sessions_missing / nullif(sessions_expected, 0), 2) as missing_pct,
    bars_on_non_session_days,
    corrected_sessions,
    excluded_rows,
    training_rows
from marts.symbol_coverage
where sessions_missing > 0
   or bars_on_non_session_days > 0
   or corrected_sessions > 0
   or excluded_rows > 0
order by sessions_missing - sessions_known_missing desc, sessions_missing desc, corrected_sessions desc, symbol
