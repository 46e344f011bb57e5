"""The local stack for development and the tests: Valkey, SecantusDB and PostgreSQL as plain
processes, and the supervisord configuration that runs them with the API, the workers and the
watchdog (`python -m devstack serve | wait`). Not part of the image."""
