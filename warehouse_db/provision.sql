-- Roles, schemas and privileges of the warehouse. Idempotent: every entry point runs it before work.
-- The roles are NOLOGIN group roles: the connecting user is made a member and acts as one with SET ROLE,
-- so the same setup works on the embedded warehouse (trust auth) and on a hosted server (one login user).
do $$
declare
    role_name text;
begin
    foreach role_name in array array['loader', 'transformer', 'trainer', 'analyst'] loop
        if not exists (select from pg_roles where rolname = role_name) then
            execute format('create role %I nologin', role_name);
        end if;
        if not pg_has_role(current_user, role_name, 'member') then
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
