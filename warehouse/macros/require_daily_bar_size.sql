{#
    on-run-start: var daily_bar_size set to anything but the daily bars' '1 day' stops the run with one line.

    marts.training_bars holds one bar per symbol and session, and every model after staging keys bars by session.
    `dbt build --vars '{daily_bar_size: "1 hour"}'` passed every test and kept, of each session's hourly bars, the
    one landed last (09:30 for some sessions, 15:00 for others) as if it were that session's daily bar: features,
    targets and folds over an arbitrary hour, and nothing said so. Intraday bars stay in raw.ibkr_bars, listed in
    intermediate.int_bars_excluded, for queries of one's own.
    Any other value ('1 D', '1 week', a number) matches no bar as ingest lands them, or bars that are not a
    session's ('1 week', '1 month'): the build passed every test too, over an empty mart. Staging compares the var
    with raw's bar_size as it is, so '1 day' is the one value that builds the mart.
#}
{% macro require_daily_bar_size() %}
    {%- set bar_size = var("daily_bar_size") | string -%}
    {%- if bar_size.strip().split(" ")[-1].lower() in ("sec", "secs", "min", "mins", "hour", "hours") -%}
        {{ exceptions.raise_compiler_error(
            "var daily_bar_size is '" ~ bar_size ~ "', an intraday bar size: marts.training_bars holds one bar per "
            ~ "symbol and session, and would keep one arbitrary bar of each session's. Build it from daily bars "
            ~ "(daily_bar_size '1 day', the default: drop the var); intraday bars stay in raw.ibkr_bars."
        ) }}
    {%- elif bar_size != "1 day" -%}
        {{ exceptions.raise_compiler_error(
            "var daily_bar_size is '" ~ bar_size ~ "', not '1 day': marts.training_bars holds one bar per symbol and "
            ~ "session, the daily bars raw.ibkr_bars holds as '1 day'; another value matches bars of a week or month, "
            ~ "or none (an empty mart that passes every test). Drop the var: '1 day' is the default."
        ) }}
    {%- endif -%}
{% endmacro %}
