{{ config(materialized='table') }}

-- One row per walk-forward fold, oldest first: the date ranges of its train, validation and test splits (see the YAML).

with

plan as (

    select * from {{ ref('walk_forward_plan') }}

),

sessions as (

    select session_index, calendar_date as session_date
    from {{ ref('int_calendar_days_numbered') }}
    where is_session

),

-- The splits are laid out in session indexes (consecutive numbers of NYSE sessions), so that "n sessions before"
-- is a subtraction; the folds CTE turns them back into dates.
plan_session_indexes as (

    select
        plan.*,
        first_day.session_index as first_index,
        last_day.session_index as last_index,
        plan.purge_sessions + plan.embargo_sessions as gap_sessions

    from plan
    inner join sessions as first_day on first_day.session_date = plan.first_session
    inner join sessions as last_day on last_day.session_date = plan.last_session

),

test_indexes as (

    -- Position 1 is the latest fold: its test split ends on the last session; earlier ones tile backwards.
    select
        plan_session_indexes.*,
        plan_session_indexes.folds_laid_out - position + 1 as fold_id,
        last_index - (position - 1) * test_sessions as test_end_index,
        last_index - position * test_sessions + 1 as test_start_index

    from plan_session_indexes
    cross join generate_series(1, plan_session_indexes.folds_laid_out) as position

),

validation_indexes as (

    select
        test_indexes.*,
        test_start_index - gap_sessions - validation_sessions as validation_start_index,
        test_start_index - gap_sessions - 1 as validation_end_index

    from test_indexes

),

train_indexes as (

    select
        validation_indexes.*,
        case
            when scheme = 'rolling'
                then greatest(first_index, validation_start_index - gap_sessions - train_sessions)
            else first_index
        end as train_start_index,
        validation_start_index - gap_sessions - 1 as train_end_index

    from validation_indexes

),

folds as (

    select
        train_indexes.fold_id::integer as fold_id,
        train_indexes.scheme,
        train_start.session_date as train_start,
        train_end.session_date as train_end,
        validation_start.session_date as validation_start,
        validation_end.session_date as validation_end,
        test_start.session_date as test_start,
        test_end.session_date as test_end,
        (train_indexes.train_end_index - train_indexes.train_start_index + 1)::integer as train_sessions,
        (train_indexes.validation_end_index - train_indexes.validation_start_index + 1)::integer as validation_sessions,
        (train_indexes.test_end_index - train_indexes.test_start_index + 1)::integer as test_sessions,
        train_indexes.purge_sessions,
        train_indexes.embargo_sessions

    from train_indexes
    inner join sessions as train_start on train_start.session_index = train_indexes.train_start_index
    inner join sessions as train_end on train_end.session_index = train_indexes.train_end_index
    inner join sessions as validation_start on validation_start.session_index = train_indexes.validation_start_index
    inner join sessions as validation_end on validation_end.session_index = train_indexes.validation_end_index
    inner join sessions as test_start on test_start.session_index = train_indexes.test_start_index
    inner join sessions as test_end on test_end.session_index = train_indexes.test_end_index

)

select * from folds
order by fold_id
