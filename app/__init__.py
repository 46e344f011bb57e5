"""docproc's service code: the API (app.api) over its services (app.intake, app.retrieval,
app.answering, app.embedding) over the stores (app.stores); the shared concepts beside them."""
