-- install_package.sql: the rest of install.sql's DO block, which holds the package text
-- in v_package; install.sql describes what it does. Not a file of functions.
    v_schema constant text := $schema${{.schema}}$schema$;
    v_api constant text := v_schema || '_api';
    -- The comment that marks {{.schema}}_api as this install's package. Installs before
    -- the hashes were kept have the marker followed by ' (re-installed whole ...)'.
    v_marker constant text := 'orkstate functions of the install ' || v_schema;
    v_package_hash constant text := md5(v_package);
    v_nsp oid;
    v_comment text;
    v_routines text;
    v_old_sigs text[];
    v_old_names text[];
    v_old_acls text[];
    v_common jsonb;
    v_at integer;
    v_acl text;
    v_fn record;
    v_grantee text;
    v_grant record;
    v_detail text;
begin
    -- The same rule as pgstore.ValidateSchemaName (which also refuses keywords of newer
    -- servers), so a tern config that does not check ORK_SCHEMA cannot install into a
    -- name that DDL folds to lower case while NOTIFY channels keep it as it is.
    if v_schema !~ '^[a-z_][a-z0-9_]*$' or length(v_schema) > 40 or starts_with(v_schema, 'pg_')
       or v_schema in ('public', 'information_schema')
       or exists (select from pg_get_keywords() k where k.word = v_schema and k.catcode <> 'U') then
        raise exception using errcode = 'invalid_schema_name',
            message = format('orkstate: invalid install schema name %L', v_schema),
            hint = 'Use at most 40 lower-case letters, digits and underscores, not starting with a digit '
                || 'or pg_, and not a reserved SQL keyword.';
    end if;

    select n.oid, obj_description(n.oid, 'pg_namespace') into v_nsp, v_comment
    from pg_namespace n where n.nspname = v_api;
    if v_nsp is null then
        execute format('create schema %I', v_api);
        select n.oid into v_nsp from pg_namespace n where n.nspname = v_api;
    elsif not coalesce(v_comment = v_marker or starts_with(v_comment, v_marker || ' ')
                       or starts_with(v_comment, v_marker || ';'), false) then
        raise exception using errcode = 'duplicate_schema',
            message = format('orkstate: schema %I exists and is not the function package of the install %I', v_api, v_schema),
            detail = format('Its comment is %L; the package marks its schema with a comment beginning %L.', v_comment, v_marker),
            hint = 'The package would replace the functions in that schema: rename or drop it, or install under another schema name.';
    end if;

    -- Unchanged: the same package text, and the routines are still the ones it created
    -- (a migration's CASCADE or a hand-made change would otherwise go unrepaired).
    if v_comment like '%package=' || v_package_hash || '%'
       and substring(v_comment from 'functions=([0-9a-f]{32})') = (
           select md5(coalesce(string_agg(case when p.prokind = 'a' then p.oid::regprocedure::text
                                               else pg_get_functiondef(p.oid) end,
                                          e'\n' order by p.oid::regprocedure::text), ''))
           from pg_proc p where p.pronamespace = v_nsp) then
        return;
    end if;

    -- Replace: remember every routine's privileges, then drop them all in one statement,
    -- RESTRICT: calls among them do not count, anything outside the package that uses
    -- one of them (a view, a default, a trigger) stops the install and is named.
    select array_agg(p.oid::regprocedure::text order by p.oid), array_agg(p.proname::text order by p.oid),
           array_agg(coalesce(p.proacl, acldefault('f', p.proowner))::text order by p.oid),
           string_agg(p.oid::regprocedure::text, ', ' order by p.oid)
    into v_old_sigs, v_old_names, v_old_acls, v_routines
    from pg_proc p where p.pronamespace = v_nsp;
    -- The privileges every routine of the package had: what a routine new in this
    -- release gets (EXECUTE for PUBLIC only when every old routine had it).
    select jsonb_agg(jsonb_build_object('grantee', c.grantee, 'privilege', c.privilege_type, 'grantable', c.grantable))
    into v_common
    from (select a.grantee, a.privilege_type, bool_and(a.is_grantable) as grantable
          from pg_proc p, aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) a
          where p.pronamespace = v_nsp and a.grantee <> p.proowner
          group by a.grantee, a.privilege_type
          having count(*) = cardinality(v_old_sigs)) c;
    if v_routines is not null then
        begin
            execute 'drop routine ' || v_routines;
        exception when dependent_objects_still_exist then
            get stacked diagnostics v_detail = pg_exception_detail;
            raise exception using errcode = 'dependent_objects_still_exist',
                message = format('orkstate: cannot replace the functions of %I: objects outside the package depend on them: %s',
                                 v_api, replace(v_detail, e'\n', '; ')),
                hint = 'The install drops nothing it did not create: drop those objects first and create them again after the install.';
        end;
    end if;

    execute v_package;

    -- A routine that existed before gets exactly its old privileges (grants and revokes),
    -- found by signature, or by name when the name was and is unique (a changed
    -- signature). A routine new in this release gets the privileges all the old ones
    -- had in common, and keeps what the owner's default privileges gave it. On a first
    -- install every routine keeps the privileges it was created with.
    for v_fn in
        select p.oid::regprocedure::text as sig, p.proname::text as name, p.proowner as owner,
               coalesce(p.proacl, acldefault('f', p.proowner)) as acl
        from pg_proc p where p.pronamespace = v_nsp
    loop
        continue when v_old_sigs is null;
        v_at := array_position(v_old_sigs, v_fn.sig);
        if v_at is null and cardinality(array_positions(v_old_names, v_fn.name)) = 1
           and (select count(*) from pg_proc p where p.pronamespace = v_nsp and p.proname = v_fn.name) = 1 then
            v_at := array_position(v_old_names, v_fn.name);
        end if;
        if v_at is not null then
            v_acl := v_old_acls[v_at];
        else
            select array_agg(x.item)::text into v_acl from (
                select makeaclitem(c.grantee, v_fn.owner, c.privilege, c.grantable) as item
                from jsonb_to_recordset(coalesce(v_common, '[]')) as c(grantee oid, privilege text, grantable boolean)
                union all
                select makeaclitem(a.grantee, a.grantor, a.privilege_type, a.is_grantable)
                from aclexplode(v_fn.acl) a where a.grantee <> 0
            ) x;
        end if;
        for v_grantee in
            select distinct case a.grantee when 0 then 'public' else quote_ident(pg_get_userbyid(a.grantee)) end
            from aclexplode(v_fn.acl) a where a.grantee <> v_fn.owner
        loop
            execute format('revoke all on routine %s from %s', v_fn.sig, v_grantee);
        end loop;
        for v_grant in
            select a.privilege_type, a.is_grantable,
                   case a.grantee when 0 then 'public' else quote_ident(pg_get_userbyid(a.grantee)) end as grantee
            from aclexplode(coalesce(v_acl, '{}')::aclitem[]) a where a.grantee <> v_fn.owner
        loop
            execute format('grant %s on routine %s to %s%s', v_grant.privilege_type, v_fn.sig, v_grant.grantee,
                           case when v_grant.is_grantable then ' with grant option' else '' end);
        end loop;
    end loop;

    execute format('comment on schema %I is %L', v_api, format('%s; package=%s functions=%s', v_marker, v_package_hash, (
        select md5(coalesce(string_agg(case when p.prokind = 'a' then p.oid::regprocedure::text
                                            else pg_get_functiondef(p.oid) end,
                                       e'\n' order by p.oid::regprocedure::text), ''))
        from pg_proc p where p.pronamespace = v_nsp)));
end
