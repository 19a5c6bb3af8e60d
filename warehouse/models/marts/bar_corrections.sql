{{ config(materialized='view') }}

-- Analysts' view of re-delivered bars whose values disagree (see int_bar_corrections).

select * from {{ ref('int_bar_corrections') }}
