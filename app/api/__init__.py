"""The HTTP API: routes, their dependencies, authentication and rate limits, middleware, the
request and response bodies, and the one translation of errors into responses."""
