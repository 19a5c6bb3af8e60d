{#
    Exact recursive averages as PostgreSQL aggregates, created by on-run-start (idempotent).

    ema(x, alpha, seed) is the exponential moving average
        ema_1 = x_1                                  (seed is null: seeded with the first value)
        ema_1 = seed + alpha * (x_1 - seed)          (seed given: continue a stored state)
        ema_t = ema_{t-1} + alpha * (x_t - ema_{t-1})
    skipping null x (the state carries over). Used as a running window aggregate
        ema(x, alpha, seed) over (partition by ... order by ... rows between unbounded preceding and current row)
    PostgreSQL evaluates such a frame incrementally (one transition per row), so the cost is linear.
    alpha = 2 / (n + 1) gives the n-period EMA (pandas ewm(span=n, adjust=False)); alpha = 1 / n gives
    Wilder's smoothing (ewm(alpha=1/n, adjust=False)). The seed lets an incremental build continue exactly
    from the state stored with the last computed row.
#}
{% macro warehouse_functions_schema() -%}
    {{ generate_schema_name('intermediate', none) }}
{%- endmacro %}

{% macro ema_function() -%}
    {{ warehouse_functions_schema() }}.ema
{%- endmacro %}

{#
    Two dbt commands at once (two terminals, a cron job and a user) run the on-run-start hooks at the same time, and
    PostgreSQL refuses the second of two concurrent CREATE OR REPLACE FUNCTION or GRANT statements on the same object
    with "tuple concurrently updated". Each hook runs as one transaction, so a transaction-level advisory lock taken
    first makes the hooks of concurrent commands take turns.
#}
{% macro take_turns_on_run_start() -%}
    select pg_advisory_xact_lock(hashtext('warehouse.on_run_start'));
{%- endmacro %}

{% macro create_warehouse_functions() %}
    {%- set schema = warehouse_functions_schema() -%}
    {{ set_target_role() }}
    {{ take_turns_on_run_start() }}
    create schema if not exists {{ schema }};

    create or replace function {{ schema }}.ema_step(
        state double precision, x double precision, alpha double precision, seed double precision
    )
    returns double precision
    language plpgsql immutable parallel safe
    as $body$
    begin
        if x is null then
            return state;
        end if;
        if state is null then
            if seed is null then
                return x;
            end if;
            return seed + alpha * (x - seed);
        end if;
        return state + alpha * (x - state);
    end
    $body$;

    comment on function {{ schema }}.ema_step(double precision, double precision, double precision, double precision) is
        'Transition function of ema(): ema_t = ema_{t-1} + alpha * (x_t - ema_{t-1}); first value (or the seed) starts it.';

    create or replace aggregate {{ schema }}.ema(double precision, double precision, double precision) (
        sfunc = {{ schema }}.ema_step,
        stype = double precision
    );

    comment on aggregate {{ schema }}.ema(double precision, double precision, double precision) is
        'ema(x, alpha, seed): exact recursive exponential moving average; run it as a window aggregate over rows between unbounded preceding and current row.';
{% endmacro %}

{#
    The marts schema is readable by the training job and analysts; dbt's `grants` config grants SELECT
    on each mart relation, USAGE on the schema is granted here. Nothing is granted on raw, staging,
    intermediate or seeds, so those stay invisible to trainer and analyst.
#}
{% macro grant_mart_schema_usage() %}
    {%- set schema = generate_schema_name('marts', none) -%}
    {{ set_target_role() }}
    {{ take_turns_on_run_start() }}
    create schema if not exists {{ schema }};
    grant usage on schema {{ schema }} to trainer, analyst;
{% endmacro %}
