{#
    Fails for every bar after its series' warm-up (session_number > var warmup_sessions) that lacks a feature of
    training_bars, naming the features it lacks (`missing_features`). training_bars keeps only rows with every
    feature, so such a bar is a session missing from the mart while every other test passes. Quote bars
    (what_to_show MIDPOINT, BID, ASK, BID_ASK) carry no volume, so no volume z-score: they are not checked.

    What it catches: rows an earlier release's SQL computed and no later build recomputed (an incremental build
    recomputes only series that received bars). Before 292bd7b, 20 equal volumes gave a null volume z-score, and a
    warehouse upgraded in place kept those rows: the sessions were missing from the mart after the new release's
    `make dbt-build`. `make dbt-build ARGS='--full-refresh'` recomputes them.
#}
{% test features_present_after_warm_up(model) %}

{%- set features = training_feature_columns() %}

select
    symbol,
    bar_size,
    what_to_show,
    use_rth,
    session_date,
    session_number,
    array_to_string(array[
        {%- for feature in features %}
        case when {{ feature }} is null then '{{ feature }}' end{{ ',' if not loop.last }}
        {%- endfor %}
    ]::text[], ', ') as missing_features

from {{ model }}
where session_number > {{ var('warmup_sessions') | int }}
  and what_to_show not in {{ quote_what_to_show() }}
  and ({% for feature in features %}{{ feature }} is null{{ ' or ' if not loop.last }}{% else %}false{% endfor %})

{% endtest %}
