{#
    Fails for every contract id that two or more symbols hold on the same sessions of one bar setting
    (`partition_by`). IBKR keeps a contract's id when its ticker changes (FB became META in 2022, conId 107113386):
    once the watchlist names the new ticker, its whole history lands beside the old ticker's bars, and the mart
    would hold the same company twice over those sessions. Bars without a contract id (CSV files may leave it out)
    are not compared. Each failure row names the contract, its symbols and the sessions they share.
#}
{% test one_symbol_per_contract(model, partition_by, contract='con_id', order_by='session_date') %}

{%- set partition_csv = partition_by | join(', ') %}

with shared_sessions as (

    select
        {{ contract }} as contract_id,
        {{ partition_csv }},
        {{ order_by }} as session,
        string_agg(distinct symbol, ', ' order by symbol) as symbols
    from {{ model }}
    where {{ contract }} is not null
    group by {{ contract }}, {{ partition_csv }}, {{ order_by }}
    having count(distinct symbol) > 1

)

select
    contract_id,
    {{ partition_csv }},
    symbols,
    count(*) as shared_sessions,
    min(session) as first_shared_session,
    max(session) as last_shared_session
from shared_sessions
group by contract_id, {{ partition_csv }}, symbols

{% endtest %}
