{#
    Fails for every bar whose open, high or low is a bad print beside good closes: within one series
    (`partition_by`, in `order_by` order)
    - an open more than a factor `factor` off both the previous session's close and the bar's own close (above
      `factor` times the greater, or below the lesser divided by `factor`): a gap that undid itself within the
      session. A bad opening print drags the high (or the low) with it, since staging holds low <= open <= high;
    - else a high more than `factor` times the greater of the bar's open and close;
    - else a low below the lesser of the bar's open and close divided by `factor`.
    no_bad_ticks judges the closes only, so a bar of high 1000x its close passed it and every other test, and
    reached the mart as a high_low_range of 999 (about 0.03 on other sessions) and an ATR 70x the close for
    weeks; training fills at the open, so a bad open is a fill at a price that never traded. A zero low fails
    staging's prices_positive_and_finite already (prices >= 1e-8); a low of 1/1000 of the close does not.
    Each failure row names the series, the session, what is off (`problem`) and the bar's prices with the
    previous close.

    The factor, and why (5, as no_bad_ticks): since 2013 limit up-limit down bands pause a listed US stock that
    moves 5% to 20% (75% below $0.75) within five minutes, and trades far outside them are broken as clearly
    erroneous, so a daily high 5x both the open and the close (or a low a fifth of both) is essentially unheard of;
    a data error of 10x or 1000x is 5x off by far. Real bars pass: a squeeze that runs 300% intraday and fades
    (high 4x the close), a biotech that opens at 10 and sinks to 2.50 on failed trial data (its low is judged
    against its close), a buyout that gaps 6x at the open and stays (the open is at the close's level). The open
    is judged only against a previous close: on a series' first session (an IPO's opening print is often far from
    its close) a bad open beside an equally bad high is not caught.
    Every price that is a whole number of cents is taken `rounding` (half a cent) in the bar's favour: a CSV file
    in cents states 0.06 for anything from 0.055 and 0.01 for anything below 0.015, so below about ten cents the
    rounding alone turns a real 3.7x flush (open 0.055, low 0.0149) into a 6x one (0.06 and 0.01). Above a dollar
    the allowance is 0.5% or less; a price with more decimals (0.0042) was not rounded to cents and gets none.
    `verified` (optional) is a relation of bars checked against another source and found real, one row per
    `verified_by` columns (a subset of `partition_by`) and `session_date`: the bar of such a session passes. Any
    other bar is judged as before.
#}
{% test no_bad_intraday_prices(
    model, partition_by, order_by='session_date', factor=5, rounding=0.005, verified=none, verified_by=['symbol']
) %}

{%- set partition_csv = partition_by | join(', ') %}

with bars as (

    select
        {{ partition_csv }},
        {{ order_by }} as session_date,
        lag(close) over series as previous_close,
        open,
        high,
        low,
        close
    from {{ model }}
    window series as (partition by {{ partition_csv }} order by {{ order_by }})

),

judged as (

    select
        *,
        case
            when previous_close > 0
                and ({{ cents_low('open', rounding) }}
                         > {{ factor }} * {{ cents_high('greatest(previous_close, close)', rounding) }}
                     or {{ cents_high('open', rounding) }}
                         < {{ cents_low('least(previous_close, close)', rounding) }} / {{ factor }})
                then 'open more than {{ factor }}x off both the previous close and the close'
            when {{ cents_low('high', rounding) }} > {{ factor }} * {{ cents_high('greatest(open, close)', rounding) }}
                then 'high more than {{ factor }}x the open and the close'
            when {{ cents_high('low', rounding) }} < {{ cents_low('least(open, close)', rounding) }} / {{ factor }}
                then 'low below 1/{{ factor }} of the open and the close'
        end as problem
    from bars

)

select * from judged
where problem is not null
{{ not_verified(verified, verified_by, 'judged', 'judged.session_date') }}

{% endtest %}
