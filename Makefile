.PHONY: run test lint bench

# The whole stack on localhost (redis-server, local S3, gateway, worker, beat).
run:
	scripts/run_local.sh

# The test suite; starts its own servers on free loopback ports.
test:
	scripts/test.sh

lint:
	.venv/bin/ruff check . && .venv/bin/mypy api worker shared

bench:
	.venv/bin/python -m bench.perf_bench
