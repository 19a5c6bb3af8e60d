{#
    Fails for every bad tick: within one series (`partition_by`, in `order_by` order) a session whose close jumped
    from the previous close by more than a factor `factor` (up, or down to less than 1 / `factor`) and whose next
    session closed back within `tolerance` of that previous close (|next close / previous close - 1| <= tolerance).
    A spike and back that nothing in the market explains: a split moves the price for good and never reverts, so
    no_unadjusted_splits and this test never see the same jump, and the volume plays no part here (a bad tick
    usually leaves it as it was). Alternating bad ticks (every other session 1000x off) fail on every session of
    the run, the good ones between too: between two bad closes a good one is itself a jump and back.
    Each failure row names the series, the sessions before, of and after the jump, and their three closes.

    The thresholds, and why: real US stocks rarely move 3x in one session, and a real extreme move does not undo
    itself the next day. A biotech that gains 300% on trial data and loses 70% the day after is a 4x jump that lands
    20% above where it started: a factor of 5 lets it through, and so does a 6x buyout that stays. To fail, a real
    move would have to gain 400% (or lose 80%) and give all of it back but 25% the next session; a data error of
    10x or 1000x does exactly that. Not judged: the last session of a series (no next close yet; it fails once the
    next session lands), a spike that lasts two sessions or more, and a bad high or low beside a good close.
#}
{% test no_bad_ticks(model, partition_by, order_by='session_date', factor=5, tolerance=0.25) %}

{%- set partition_csv = partition_by | join(', ') %}

with ordered as (

    select
        {{ partition_csv }},
        lag({{ order_by }}) over series as previous_session,
        {{ order_by }} as session,
        lead({{ order_by }}) over series as next_session,
        lag(close) over series as previous_close,
        close,
        lead(close) over series as next_close
    from {{ model }}
    window series as (partition by {{ partition_csv }} order by {{ order_by }})

),

moves as (

    select
        *,
        close / previous_close as jump_factor,
        next_close / previous_close as back_to_factor
    from ordered
    where previous_close > 0 and next_close > 0

),

spikes_and_back as (

    select
        {{ partition_csv }},
        previous_session,
        session as session_date,
        next_session,
        previous_close,
        close,
        next_close,
        jump_factor,
        back_to_factor
    from moves
    where (jump_factor > {{ factor }} or jump_factor < 1.0 / {{ factor }})
      and abs(back_to_factor - 1) <= {{ tolerance }}

)

select * from spikes_and_back

{% endtest %}
