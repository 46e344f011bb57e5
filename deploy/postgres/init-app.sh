#!/bin/sh
# Runs once, when the postgres container starts on an empty data volume (/docker-entrypoint-initdb.d):
# the service's own role and database, and the vector extension, which only a superuser may create
# (the service's own `CREATE EXTENSION IF NOT EXISTS vector` is then a no-op).
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
  -v app_password="$POSTGRES_APP_PASSWORD" <<'SQL'
CREATE ROLE docproc LOGIN PASSWORD :'app_password';
CREATE DATABASE docproc OWNER docproc;
\connect docproc
CREATE EXTENSION IF NOT EXISTS vector;
SQL
