{{ config(materialized='view') }}

-- For analysts: which rows of training_bars each walk-forward fold trains, validates and tests on.

with

folds as (

    select * from {{ ref('walk_forward_folds') }}

),

training_bars as (

    select symbol, session_date from {{ ref('training_bars') }}

),

splits as (

    select fold_id, 'train' as split, train_start as split_start, train_end as split_end from folds
    union all
    select fold_id, 'validation', validation_start, validation_end from folds
    union all
    select fold_id, 'test', test_start, test_end from folds

),

fold_rows as (

    select
        splits.fold_id,
        splits.split,
        training_bars.symbol,
        training_bars.session_date

    from splits
    inner join training_bars on training_bars.session_date between splits.split_start and splits.split_end

)

select * from fold_rows
