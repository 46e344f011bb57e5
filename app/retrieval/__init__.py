"""Retrieval: search parameters and filters, and the search itself (embed the query, run the
vector and keyword legs at once, fuse them, highlight). The SQL is the chunks store's."""
