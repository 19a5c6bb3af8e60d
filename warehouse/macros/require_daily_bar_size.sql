{#
    on-run-start: var daily_bar_size set to an intraday bar size ('1 hour', '5 mins') stops the run with one line.

    marts.training_bars holds one bar per symbol and session, and every model after staging keys bars by session.
    `dbt build --vars '{daily_bar_size: "1 hour"}'` passed every test and kept, of each session's hourly bars, the
    one landed last (09:30 for some sessions, 15:00 for others) as if it were that session's daily bar: features,
    targets and folds over an arbitrary hour, and nothing said so. Intraday bars stay in raw.ibkr_bars, listed in
    intermediate.int_bars_excluded, for queries of one's own.
#}
{% macro require_daily_bar_size() %}
    {%- set bar_size = var("daily_bar_size") | string -%}
    {%- if bar_size.strip().split(" ")[-1].lower() in ("sec", "secs", "min", "mins", "hour", "hours") -%}
        {{ exceptions.raise_compiler_error(
            "var daily_bar_size is '" ~ bar_size ~ "', an intraday bar size: marts.training_bars holds one bar per "
            ~ "symbol and session, and would keep one arbitrary bar of each session's. Build it from daily bars "
            ~ "(daily_bar_size '1 day', the default: drop the var); intraday bars stay in raw.ibkr_bars."
        ) }}
    {%- endif -%}
{% endmacro %}
