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

plan_indexed as (

    select
        plan.*,
        first_day.session_index as first_index,
        last_day.session_index as last_index,
        plan.purge_sessions + plan.embargo_sessions as gap_sessions

    from plan
    inner join sessions as first_day on first_day.session_date = plan.first_session
    inner join sessions as last_day on last_day.session_date = plan.last_session

),

tested as (

    -- Position 1 is the latest fold: its test split ends on the last session; earlier ones tile backwards.
    select
        plan_indexed.*,
        plan_indexed.folds_laid_out - position + 1 as fold_id,
        last_index - (position - 1) * test_sessions as test_end_index,
        last_index - position * test_sessions + 1 as test_start_index

    from plan_indexed
    cross join generate_series(1, plan_indexed.folds_laid_out) as position

),

validated as (

    select
        tested.*,
        test_start_index - gap_sessions - validation_sessions as validation_start_index,
        test_start_index - gap_sessions - 1 as validation_end_index

    from tested

),

trained as (

    select
        validated.*,
        case
            when scheme = 'rolling'
                then greatest(first_index, validation_start_index - gap_sessions - train_sessions)
            else first_index
        end as train_start_index,
        validation_start_index - gap_sessions - 1 as train_end_index

    from validated

),

folds as (

    select
        trained.fold_id::integer as fold_id,
        trained.scheme,
        train_start.session_date as train_start,
        train_end.session_date as train_end,
        validation_start.session_date as validation_start,
        validation_end.session_date as validation_end,
        test_start.session_date as test_start,
        test_end.session_date as test_end,
        (trained.train_end_index - trained.train_start_index + 1)::integer as train_sessions,
        (trained.validation_end_index - trained.validation_start_index + 1)::integer as validation_sessions,
        (trained.test_end_index - trained.test_start_index + 1)::integer as test_sessions,
        trained.purge_sessions,
        trained.embargo_sessions

    from trained
    inner join sessions as train_start on train_start.session_index = trained.train_start_index
    inner join sessions as train_end on train_end.session_index = trained.train_end_index
    inner join sessions as validation_start on validation_start.session_index = trained.validation_start_index
    inner join sessions as validation_end on validation_end.session_index = trained.validation_end_index
    inner join sessions as test_start on test_start.session_index = trained.test_start_index
    inner join sessions as test_end on test_end.session_index = trained.test_end_index

)

select * from folds
order by fold_id
