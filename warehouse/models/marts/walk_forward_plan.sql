{{ config(materialized='table') }}

-- One row: the walk-forward layout the vars ask for, and how much of it the history of training_bars holds.

{%- set scheme = var('walk_forward_scheme') %}
{%- set folds = var('walk_forward_folds') | int %}
{%- set test_sessions = var('walk_forward_test_sessions') | int %}
{%- set validation_sessions = var('walk_forward_validation_sessions') | int %}
{%- set train_sessions = var('walk_forward_train_sessions') | int %}
{%- set min_train_sessions = var('walk_forward_min_train_sessions') | int %}
{%- set purge = var('purge_sessions') | int %}
{%- set embargo = var('embargo_sessions') | int %}
{%- set gap = purge + embargo %}

{%- set problems = [] %}
{%- if scheme not in ['expanding', 'rolling'] %}
    {%- do problems.append("walk_forward_scheme must be 'expanding' or 'rolling', not '" ~ scheme ~ "'") %}
{%- endif %}
{%- if folds < 1 or test_sessions < 1 or validation_sessions < 1 or min_train_sessions < 1 %}
    {%- do problems.append('walk_forward_folds, _test_sessions, _validation_sessions and _min_train_sessions must be >= 1') %}
{%- endif %}
{%- if purge < 1 or embargo < 0 %}
    {%- do problems.append('purge_sessions must be >= 1 (the target looks 1 session ahead) and embargo_sessions >= 0') %}
{%- endif %}
{%- if scheme == 'rolling' and train_sessions < min_train_sessions %}
    {%- do problems.append('walk_forward_train_sessions must be >= walk_forward_min_train_sessions') %}
{%- endif %}
{%- if problems %}
    {{ exceptions.raise_compiler_error('walk-forward vars: ' ~ problems | join('; ')) }}
{%- endif %}

with

training_bars as (

    select session_date from {{ ref('training_bars') }}

),

days as (

    select * from {{ ref('int_calendar_days_numbered') }}

),

history as (

    select
        min(session_date) as first_session,
        max(session_date) as last_session
    from training_bars

),

history_sized as (

    select
        history.first_session,
        history.last_session,
        coalesce(through_last.sessions_through_date - coalesce(before_first.sessions_through_date, 0), 0)::integer
            as history_sessions

    from history
    left join days as through_last on through_last.calendar_date = history.last_session
    left join days as before_first on before_first.calendar_date = history.first_session - 1

),

plan as (

    select
        '{{ scheme }}'::text as scheme,
        {{ folds }} as folds_planned,
        -- Test windows are laid out from the last session backwards; a fold fits when what is left before
        -- its validation split and the two gaps still holds the shortest train split.
        greatest(0, least(
            {{ folds }},
            (history_sessions - {{ 2 * gap + validation_sessions + min_train_sessions }}) / {{ test_sessions }}
        )) as folds_laid_out,
        {{ test_sessions }} as test_sessions,
        {{ validation_sessions }} as validation_sessions,
        {{ train_sessions if scheme == 'rolling' else 'null::integer' }} as train_sessions,
        {{ min_train_sessions }} as min_train_sessions,
        {{ purge }} as purge_sessions,
        {{ embargo }} as embargo_sessions,
        {{ var('warmup_sessions') | int }} as warmup_sessions,
        first_session,
        last_session,
        history_sessions,
        {{ folds * test_sessions + 2 * gap + validation_sessions + min_train_sessions }} as sessions_needed

    from history_sized

)

select * from plan
