{#
    Fails for every contract id that two or more symbols hold on the same sessions of one bar setting
    (`partition_by`). IBKR keeps a contract's id when its ticker changes (FB became META in 2022, conId 107113386):
    once the watchlist names the new ticker, its whole history lands beside the old ticker's bars, and the mart
    would hold the same company twice over those sessions. Bars without a contract id (CSV files may leave it out)
    are not compared. Each failure row names the contract, two of its symbols and the sessions they share.
#}
{% test one_symbol_per_contract(model, partition_by, contract='con_id', order_by='session_date') %}

{%- set partition_csv = partition_by | join(', ') %}

with bars as (

    select {{ contract }} as contract_id, {{ partition_csv }}, symbol, {{ order_by }} as session_date
    from {{ model }}
    where {{ contract }} is not null

),

spans as (

    select
        contract_id,
        {{ partition_csv }},
        symbol,
        min(session_date) as first_session,
        max(session_date) as last_session
    from bars
    group by contract_id, {{ partition_csv }}, symbol

),

overlapping as (

    -- Two symbols of one contract whose spans overlap: only they can share a session (one pass over the model to
    -- find them, instead of grouping every bar by session).
    select
        contract_id,
        {{ partition_csv }},
        earlier.symbol as symbol,
        later.symbol as other_symbol
    from spans as earlier
    inner join spans as later using (contract_id, {{ partition_csv }})
    where later.symbol > earlier.symbol
      and later.first_session <= earlier.last_session
      and earlier.first_session <= later.last_session

)

select
    contract_id,
    {{ partition_csv }},
    overlapping.symbol || ', ' || overlapping.other_symbol as symbols,
    count(*) as shared_sessions,
    min(bars.session_date) as first_shared_session,
    max(bars.session_date) as last_shared_session
from overlapping
inner join bars using (contract_id, {{ partition_csv }}, symbol)
inner join bars as other_bars
    using (contract_id, {{ partition_csv }}, session_date)
where other_bars.symbol = overlapping.other_symbol
group by contract_id, {{ partition_csv }}, overlapping.symbol, overlapping.other_symbol

{% endtest %}
