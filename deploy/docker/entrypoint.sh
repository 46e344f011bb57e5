#!/bin/sh
# The image's roles: `docker run IMAGE api | worker | watchdog [extra args]`; any other command runs as given.
# Runs under tini (PID 1), which forwards SIGTERM: gunicorn then drains its workers, and RQ finishes the
# job in hand before it exits (warm shutdown); give the container a stop timeout to match (docs/deployment.md).
set -eu

role=${1:-api}
[ $# -gt 0 ] && shift
# the healthcheck (docproc-healthcheck) reads the role from here
echo "$role" > "${DOCPROC_ROLE_FILE:-/tmp/docproc-role}"

case "$role" in
  api)
    # the API checks its bind address: AUTH=disabled (never the default) is refused on anything but loopback
    export API_BIND="0.0.0.0:${PORT:-8000}"
    # app/gunicorn_conf.py: a fresh prometheus-client multiprocess directory for the workers' /metrics,
    # gunicorn's lines in the service's log format; the app logs one line per request itself
    exec gunicorn "app.main:create_app()" \
      --bind "$API_BIND" \
      --workers "${API_WORKERS:-2}" \
      --worker-class uvicorn.workers.UvicornWorker \
      --graceful-timeout "${GRACEFUL_TIMEOUT:-30}" \
      --forwarded-allow-ips "${FORWARDED_ALLOW_IPS:-127.0.0.1}" \
      --config python:app.gunicorn_conf \
      "$@"
    ;;
  worker)
    # rq reads --url from RQ_REDIS_URL: the Valkey password stays out of the process list
    export RQ_REDIS_URL="${VALKEY_URL:?VALKEY_URL is not set}"
    exec rq worker --with-scheduler \
      --worker-class worker.rqworker.IngestWorker \
      "$@" "${QUEUE_NAME:-ingest}"
    ;;
  watchdog)
    # requeues stuck files and, with CLOUDWATCH_METRICS=true, publishes QueueDepth (namespace Docproc)
    exec python -m worker.watchdog "$@"
    ;;
  *)
    exec "$role" "$@"
    ;;
esac
