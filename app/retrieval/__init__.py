"""Search and answers: filters, vector / keyword / hybrid retrieval, prompts, the LLM adapter.

Plain functions over plain data; the routers (app/api/search.py, app/api/answers.py)
wire them to the request, the stores and the settings.
"""
