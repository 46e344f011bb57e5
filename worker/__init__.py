"""The ingestion worker: RQ jobs that parse, chunk, embed and index files."""
