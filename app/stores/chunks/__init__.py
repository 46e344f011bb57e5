"""Chunks, their vectors and full text in PostgreSQL + pgvector: the one owner of every statement
on `chunks` and `chunk_fences`. schema.py creates the tables; writer.py is the worker's writer
and the watchdog's sweep; reader.py the API's search and delete statements; where.py turns
search filters into a WHERE clause."""
