"""The LangGraph Server API (the Agent Protocol), for every declared graph.

Assistants (each graph's default one and those a key makes), threads, runs
and their streams, served on the same jobs, workers, saver and guarantees as
POST /chat: a run is a job. What is not supported answers 404 (no such
route) or 422 (naming the field).
"""
