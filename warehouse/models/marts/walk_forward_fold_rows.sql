{{ config(materialized='view') }}

-- For analysts: which rows of training_bars each walk-forward fold trains, validates and tests on.

with

folds as (

    select * from {{ ref('walk_forward_folds') }}

),

ranges as (

    select fold_id, 'train' as role, train_start as range_start, train_end as range_end from folds
    union all
    select fold_id, 'validation', validation_start, validation_end from folds
    union all
    select fold_id, 'test', test_start, test_end from folds

),

bars as (

    select symbol, session_date from {{ ref('training_bars') }}

)

select
    ranges.fold_id,
    ranges.role,
    bars.symbol,
    bars.session_date

from ranges
inner join bars on bars.session_date between ranges.range_start and ranges.range_end
