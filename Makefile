.PHONY: run reset test lint bench

# The whole stack on localhost (redis-server, local S3, gateway, worker, beat).
run:
	scripts/run_local.sh

# Forget what `make run` stored (conversations, jobs): the next run starts empty.
reset:
	rm -rf "$${LOCAL_DATA_DIR:-.data}" .run

# The test suite; starts its own servers on free loopback ports.
test:
	scripts/test.sh

lint:
	.venv/bin/ruff check . && .venv/bin/mypy api worker shared graphs

bench:
	.venv/bin/python -m bench.perf_bench
