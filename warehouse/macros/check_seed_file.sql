{#
    Pre-hook of every seed (dbt_project.yml): the CSV file's header and dates are checked before anything is written,
    and a mistake stops the seed with one line naming the file, the line and the value. The previous rows stay.

    Without it a header spelt otherwise (`sesion_date`) or with an extra column failed only as a database error on a
    loaded warehouse, and on a fresh one created the seed's table with those columns, so every later model failed
    instead. A date not written YYYY-MM-DD was read by the server's DateStyle: `11/27/2026` loaded as 2026-11-27 on a
    month-first server, while `03/04/2026` is 4 March there and 3 April on a day-first one, silently.

    The columns are those the seed's `column_types` name (dbt_project.yml), in any order; a column typed `date` holds
    YYYY-MM-DD dates (an empty field is null, which the seed's not_null tests catch). Lines are counted as in the file
    when no quoted field spans two lines.
#}
{% macro check_seed_file() -%}
    {%- if execute and model.resource_type == 'seed' -%}
        {%- set file = model.original_file_path -%}
        {%- set expected = model.config.column_types or {} -%}
        {%- set table = load_agate_table() -%}
        {%- set header = table.column_names | list -%}
        {%- if expected and (header | sort) != (expected.keys() | list | sort) -%}
            {{ exceptions.raise_compiler_error(
                file ~ " line 1: the header is '" ~ (header | join(",")) ~ "', expected the columns "
                ~ (expected.keys() | join(",")) ~ " (unknown: " ~ ((header | reject("in", expected.keys()) | list | join(",")) or "none")
                ~ "; missing: " ~ ((expected.keys() | reject("in", header) | list | join(",")) or "none")
                ~ "). Nothing was loaded; the previous rows stay."
            ) }}
        {%- endif -%}
        {%- for column, type in expected.items() if type == 'date' -%}
            {%- for row in table.rows -%}
                {%- set value = row[column] -%}
                {%- if value is not none and not modules.re.fullmatch('[0-9]{4}-[0-9]{2}-[0-9]{2}', value | string) -%}
                    {{ exceptions.raise_compiler_error(
                        file ~ " line " ~ (loop.index + 1) ~ ": " ~ column ~ " '" ~ value ~ "' is not a date written "
                        ~ "YYYY-MM-DD (e.g. 2026-11-27). Nothing was loaded; the previous rows stay."
                    ) }}
                {%- endif -%}
                {%- if value is not none -%}
                    {%- set parts = (value | string).split('-') | map('int') | list -%}
                    {%- set days = [31, 29 if (parts[0] % 4 == 0 and (parts[0] % 100 != 0 or parts[0] % 400 == 0)) else 28,
                                    31, 30, 31, 30, 31, 31, 30, 31, 30, 31] -%}
                    {%- if not (1 <= parts[1] <= 12 and 1 <= parts[2] <= days[parts[1] - 1]) -%}
                        {{ exceptions.raise_compiler_error(
                            file ~ " line " ~ (loop.index + 1) ~ ": " ~ column ~ " '" ~ value ~ "' is not a date"
                            ~ " (YYYY-MM-DD). Nothing was loaded; the previous rows stay."
                        ) }}
                    {%- endif -%}
                {%- endif -%}
            {%- endfor -%}
        {%- endfor -%}
    {%- endif -%}
{%- endmacro %}
