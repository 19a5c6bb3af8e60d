-- The train / validation / test boundaries of training_bars: one row.

{%- set embargo = var('embargo_sessions') | int %}
{%- set warmup = var('warmup_sessions') | int %}
{%- set validation_start = var('validation_start') %}
{%- set test_start = var('test_start') %}

with training_series as (

    select
        min(session_date) as first_session,
        max(session_date) as last_session
    from {{ ref('int_bars_featurized') }}
    where {{ is_training_bar_settings() }}

),

days as (

    select * from {{ ref('int_calendar_days_numbered') }}

),

range_indexed as (

    select
        training_series.first_session,
        training_series.last_session,
        coalesce(before_first.sessions_through_date, 0) + 1 as first_index,
        through_last.sessions_through_date as last_index

    from training_series
    left join days as before_first on before_first.calendar_date = training_series.first_session - 1
    left join days as through_last on through_last.calendar_date = training_series.last_session

),

sizes as (

    select
        range_indexed.*,
        -- Sessions that can be rows of the mart: after the warm-up, and with a next session (target).
        last_index - first_index - {{ warmup }} as usable_sessions,
        greatest(last_index - first_index - {{ warmup }} - 2 * {{ embargo }}, 0) as splittable_sessions

    from range_indexed

),

start_indexes as (

    select
        sizes.*,
        {% if test_start %}
        (select coalesce(sessions_through_date, 0) + 1 from days where calendar_date = date '{{ test_start }}' - 1)
        {%- else %}
        last_index - round(splittable_sessions * {{ var('test_fraction') }})::integer
        {%- endif %} as test_start_index

    from sizes

),

boundary_indexes as (

    select
        start_indexes.*,
        {% if validation_start %}
        (select coalesce(sessions_through_date, 0) + 1 from days where calendar_date = date '{{ validation_start }}' - 1)
        {%- else %}
        test_start_index - {{ embargo }} - round(splittable_sessions * {{ var('validation_fraction') }})::integer
        {%- endif %} as validation_start_index

    from start_indexes

),

boundaries as (

    select
        boundary_indexes.first_session,
        boundary_indexes.last_session,
        boundary_indexes.last_index - boundary_indexes.first_index + 1 as sessions_in_range,
        validation_embargo.calendar_date as validation_embargo_start,
        validation.calendar_date as validation_start,
        test_embargo.calendar_date as test_embargo_start,
        test.calendar_date as test_start,
        {{ warmup }} as warmup_sessions,
        {{ embargo }} as embargo_sessions,
        {{ var('validation_fraction') }}::double precision as validation_fraction,
        {{ var('test_fraction') }}::double precision as test_fraction,
        '{{ "vars" if validation_start else "data" }}' as validation_start_from,
        '{{ "vars" if test_start else "data" }}' as test_start_from

    from boundary_indexes
    left join days as validation_embargo
        on validation_embargo.session_index = boundary_indexes.validation_start_index - {{ embargo }}
    left join days as validation
        on validation.session_index = boundary_indexes.validation_start_index
    left join days as test_embargo
        on test_embargo.session_index = boundary_indexes.test_start_index - {{ embargo }}
    left join days as test
        on test.session_index = boundary_indexes.test_start_index

)

select * from boundaries
