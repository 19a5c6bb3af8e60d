-- Roles, schemas and privileges of the warehouse. Idempotent: the admin login runs it (warehouse_db/provision.py,
-- which also creates the per-component logins, each a member of one of these roles only).
-- The roles are NOLOGIN group roles. The admin login is made a member of each, so that on a hosted server with a
-- single login that login can act as any of them with SET ROLE.
do $$
declare
    role_name text;
begin
    foreach role_name in array array['loader', 'transformer', 'trainer', 'analyst'] loop
        if not exists (select from pg_roles where rolname = role_name) then
            execute format('create role %I nologin', role_name);
        end if;
        -- PostgreSQL 16 gives a CREATEROLE user an ADMIN-only membership in the roles it creates; SET ROLE
        -- needs one with the SET option. A GRANT of a membership that exists (same grantor) keeps its options, so
        -- it says WITH SET TRUE (15 has no SET option).
        if current_setting('server_version_num')::int >= 160000 then
            if not pg_has_role(current_user, role_name, 'SET') then
                execute format('grant %I to %I with set true', role_name, current_user);
            end if;
        elsif not pg_has_role(current_user, role_name, 'MEMBER') then
            execute format('grant %I to %I', role_name, current_user);
        end if;
    end loop;
end
$$;

-- raw: written by the loader, read by dbt (transformer) only.
create schema if not exists raw authorization loader;
grant usage on schema raw to transformer;
alter default privileges for role loader in schema raw grant select on tables to transformer;
grant select on all tables in schema raw to transformer;

-- dbt creates staging, intermediate and marts as transformer; marts grant select to trainer and analyst
-- through dbt's `grants` config.
do $$
begin
    execute format('grant create, connect on database %I to transformer', current_database());
    execute format('grant connect on database %I to trainer, analyst, loader', current_database());
end
$$;

-- ml: written by the training job (trainer), read by analysts.
create schema if not exists ml authorization trainer;
grant usage on schema ml to analyst;
alter default privileges for role trainer in schema ml grant select on tables to analyst;
grant select on all tables in schema ml to analyst;
