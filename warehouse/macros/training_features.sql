{#
    The observation features of marts.training_bars, in column order. Their definitions and lookbacks are
    in warehouse/models/marts/training_bars.yml (meta.role: feature), which is what the training job
    reads; tests/test_dbt_build.py checks that this list and that YAML agree.
#}
{% macro training_feature_columns() -%}
    {{ return([
        'log_return_1',
        'log_return_5',
        'log_return_20',
        'realized_vol_20',
        'close_to_sma_10',
        'close_to_sma_50',
        'rsi_14',
        'macd_to_close',
        'macd_signal_to_close',
        'macd_hist_to_close',
        'atr_14_to_close',
        'volume_zscore_20',
        'high_low_range',
    ]) }}
{%- endmacro %}

{#
    Split of a row by session date, given a relation alias holding training_splits' boundaries:
    train before the validation embargo, validation from validation_start up to the test embargo,
    test from test_start on; the embargo sessions get null (not in the mart).
#}
{% macro split_label(session_column, splits_alias) -%}
    case
        when {{ session_column }} < {{ splits_alias }}.validation_embargo_start then 'train'
        when {{ session_column }} >= {{ splits_alias }}.validation_start
            and {{ session_column }} < {{ splits_alias }}.test_embargo_start then 'validation'
        when {{ session_column }} >= {{ splits_alias }}.test_start then 'test'
    end
{%- endmacro %}
