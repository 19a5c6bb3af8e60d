{#
    Fails for every bad tick: within one series (`partition_by`, in `order_by` order) a session whose close jumped
    from the previous close by more than a factor `factor` (up, or down to less than 1 / `factor`) and that closed
    back within `tolerance` of that previous close (|close / previous close - 1| <= tolerance) within
    `max_sessions` sessions after it: a spike of one session or of a short run of sessions (a vendor's bad batch)
    and back. Nothing in the market explains it: a split moves the price for good and never reverts, so
    no_unadjusted_splits and this test never see the same jump, and the volume plays no part here (a bad tick
    usually leaves it as it was). Alternating bad ticks (every other session 1000x off) fail on every session of
    the run, the good ones between too: between two bad closes a good one is itself a jump and back.
    Each failure row names the series, the sessions before, of and after the jump and the session it was back
    (`back_session`, `sessions_off` sessions after the jump), and their closes.

    The thresholds, and why: real US stocks rarely move 3x in one session, and a real extreme move does not undo
    itself within days. A biotech that gains 300% on trial data and loses 70% the day after is a 4x jump that lands
    20% above where it started: a factor of 5 lets it through, and so does a 6x buyout that stays, and a penny
    squeeze of +450% that gives back 70% of its peak over three sessions (still 65% up). To fail, a real move would
    have to gain 400% (or lose 80%) and give all of it back but 25% within three sessions; a data error of 10x or
    1000x does exactly that, and a bad batch from a vendor spans a few sessions as easily as one. Three sessions and
    no more: the longer the window, the likelier a real move gets all the way back (a squeeze that fades for a week
    or two can end where it began), and a failure here holds back every symbol's mart. Not judged: a spike still
    off at the last session of a series (it fails once the close is back), one that lasts more than `max_sessions`
    sessions, and a bad open, high or low beside a good close (no_bad_intraday_prices judges those).
    `verified` (optional) is a relation of bars checked against another source and found real, one row per
    `verified_by` columns (a subset of `partition_by`) and `session_date`: a jump on such a session (the failure
    row's `session_date`, the session the close jumped on) passes. Any other jump fails as before.
    The jump is judged with each close that is a whole number of cents taken `rounding` (half a cent) in its
    favour: a CSV file in cents states 0.01 for anything below 0.015 and 0.06 for anything from 0.055, so below
    about ten cents the rounding alone turns a real 3.7x move into a 6x one. Above a dollar the allowance is 0.5%
    or less; a close with more decimals (0.0042) was not rounded to cents and gets none.
#}
{% test no_bad_ticks(
    model, partition_by, order_by='session_date', factor=5, tolerance=0.25, max_sessions=3, rounding=0.005,
    verified=none, verified_by=['symbol']
) %}

{%- set partition_csv = partition_by | join(', ') %}
{%- set after = range(1, max_sessions + 1) %}

with ordered as (

    select
        {{ partition_csv }},
        lag({{ order_by }}) over series as previous_session,
        {{ order_by }} as session,
        lag(close) over series as previous_close,
        {%- for k in after %}
        lead({{ order_by }}, {{ k }}) over series as session_{{ k }}_after,
        lead(close, {{ k }}) over series as close_{{ k }}_after,
        {%- endfor %}
        close
    from {{ model }}
    window series as (partition by {{ partition_csv }} order by {{ order_by }})

),

jumps as (

    select
        *,
        close / previous_close as jump_factor,
        -- The first of the next max_sessions sessions whose close is back near the previous close, if any.
        case
            {%- for k in after %}
            when close_{{ k }}_after > 0
                and abs(close_{{ k }}_after / previous_close - 1) <= {{ tolerance }} then {{ k }}
            {%- endfor %}
        end as sessions_off
    from ordered
    where previous_close > 0 and close > 0
      and ({{ cents_low('close', rounding) }} > {{ factor }} * {{ cents_high('previous_close', rounding) }}
           or {{ cents_high('close', rounding) }} < {{ cents_low('previous_close', rounding) }} / {{ factor }})

),

spikes_and_back as (

    select
        {{ partition_csv }},
        previous_session,
        session as session_date,
        session_1_after as next_session,
        case sessions_off {%- for k in after %} when {{ k }} then session_{{ k }}_after {%- endfor %} end
            as back_session,
        sessions_off,
        previous_close,
        close,
        close_1_after as next_close,
        case sessions_off {%- for k in after %} when {{ k }} then close_{{ k }}_after {%- endfor %} end as back_close,
        jump_factor,
        case sessions_off {%- for k in after %} when {{ k }} then close_{{ k }}_after {%- endfor %} end
            / previous_close as back_to_factor
    from jumps
    where sessions_off is not null
    {{ not_verified(verified, verified_by, 'jumps', 'jumps.session') }}

)

select * from spikes_and_back

{% endtest %}
