-- Least privilege. Two group roles, granted to login roles by whoever deploys:
--   hospital_writer: what the worker needs (read and write rows, temporary staging tables);
--                    it owns nothing, so it cannot drop, alter or truncate a table.
--   hospital_reader: what web views, exports, status and validate need (read rows only).
-- e.g.  CREATE ROLE worker LOGIN PASSWORD '...' IN ROLE hospital_writer;
-- Migrations themselves run as the database owner.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'hospital_writer') THEN
        CREATE ROLE hospital_writer NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'hospital_reader') THEN
        CREATE ROLE hospital_reader NOLOGIN;
    END IF;
    EXECUTE format('GRANT CONNECT, TEMPORARY ON DATABASE %I TO hospital_writer', current_database());
    EXECUTE format('GRANT CONNECT ON DATABASE %I TO hospital_reader', current_database());
END
$$;

GRANT USAGE ON SCHEMA public TO hospital_writer, hospital_reader;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO hospital_writer;
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO hospital_writer;
GRANT SELECT ON ALL TABLES IN SCHEMA public TO hospital_reader;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO hospital_writer;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE, SELECT ON SEQUENCES TO hospital_writer;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO hospital_reader;
