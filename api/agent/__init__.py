"""The LangGraph Server API (the Agent Protocol), for every declared graph.

An assistant per graph, threads, runs and their streams, served on the same
jobs, workers, saver and guarantees as POST /chat: a run is a job. What is
not supported answers 404 (no such route) or 422 (naming the field).
"""

from api.agent import assistants, runs, server, threads

routers = [assistants.router, threads.router, runs.router, server.router]
