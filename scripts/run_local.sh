#!/usr/bin/env bash
# The whole stack on this machine, on embedded defaults: redis-server and an
# S3 server (moto) on loopback unless REDIS_URL / S3_ENDPOINT_URL say where real
# ones are, then the gateway, one worker and beat. Ctrl-C stops everything.
# What the embedded Redis and S3 store is kept in LOCAL_DATA_DIR (default
# .data/), so conversations survive a restart (even kill -9); `make reset`
# empties it. ENV_FILE (default .env) is read first if it exists.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh requirements-dev.txt
# shellcheck disable=SC1091
. .venv/bin/activate
env_file="${ENV_FILE:-.env}"
[ -f "$env_file" ] && set -a && . "$env_file" && set +a

# Logs, metrics and beat's schedule: this run's only.
run=.run
# What is stored: Redis's append-only file and the S3 objects.
data="$(mkdir -p "${LOCAL_DATA_DIR:-.data}" && cd "${LOCAL_DATA_DIR:-.data}" && pwd)"
mkdir -p "$run" "$data/redis" "$data/s3"
pids=()
stop() {
  trap - INT TERM EXIT
  echo; echo "stopping..."
  # Newest first: the gateway, worker and beat stop before Redis and S3 do.
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
    kill -TERM "${pids[i]}" 2>/dev/null || true
    wait "${pids[i]}" 2>/dev/null || true
  done
  echo "stopped."
}
trap stop INT TERM EXIT

free_port() { python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() {
  for _ in $(seq 1 100); do
    (echo >"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "nothing answers on port $1" >&2; return 1
}

if [ -z "${REDIS_URL:-}" ]; then
  port=$(free_port)
  # A memory cap that refuses writes (503 from the gateway) rather than evict jobs.
  redis-server --port "$port" --bind 127.0.0.1 --dir "$data/redis" --appendonly yes \
    --appendfsync always --save "" --logfile "$PWD/$run/redis.log" \
    --maxmemory "${REDIS_MAXMEMORY:-1gb}" --maxmemory-policy noeviction &
  pids+=($!)
  wait_port "$port"
  export REDIS_URL="redis://127.0.0.1:$port/0"
fi

export S3_BUCKET_NAME="${S3_BUCKET_NAME:-chat-memory}"
if [ -z "${S3_ENDPOINT_URL:-}" ] && [ -z "${AWS_ACCESS_KEY_ID:-}" ]; then
  port=$(free_port)
  python scripts/local_s3.py --port "$port" --data "$data/s3" >"$run/s3.log" 2>&1 &
  pids+=($!)
  wait_port "$port"
  export S3_ENDPOINT_URL="http://127.0.0.1:$port"
  export AWS_ACCESS_KEY_ID=local AWS_SECRET_ACCESS_KEY=local
  echo "S3: a local moto server at $S3_ENDPOINT_URL, its objects kept in $data/s3"
fi
python - <<'PY'
import os, boto3
s3 = boto3.client("s3", endpoint_url=os.environ.get("S3_ENDPOINT_URL"),
                  region_name=os.environ.get("AWS_REGION", "us-east-1"))
bucket = os.environ["S3_BUCKET_NAME"]
try:
    s3.head_bucket(Bucket=bucket)
except Exception:
    s3.create_bucket(Bucket=bucket)
PY

if [ -z "${GROQ_API_KEY:-}" ] && [ -z "${LLM_PROVIDER:-}" ]; then
  echo "LLM: no GROQ_API_KEY set, so replies come from the offline 'echo' model"
fi

# Every process writes its metrics here; the gateway's /metrics adds them up.
# Emptied at each start, as the counts of a stopped run are not this one's.
if [ -z "${PROMETHEUS_MULTIPROC_DIR:-}" ]; then
  export PROMETHEUS_MULTIPROC_DIR="$PWD/$run/metrics"
  rm -rf "$PROMETHEUS_MULTIPROC_DIR"
  mkdir -p "$PROMETHEUS_MULTIPROC_DIR"
fi

port="${PORT:-8000}"
uvicorn api.main:app --host 127.0.0.1 --port "$port" &
pids+=($!)
celery -A worker.celery_app worker --loglevel=INFO &
pids+=($!)
celery -A worker.celery_app beat --loglevel=INFO -s "$run/celerybeat-schedule" &
pids+=($!)

for _ in $(seq 1 150); do
  curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break
  sleep 0.2
done
cat <<MSG

The chat page: http://127.0.0.1:$port/
  API docs: http://127.0.0.1:$port/docs   metrics: http://127.0.0.1:$port/metrics
  curl -s http://127.0.0.1:$port/chat -H 'Content-Type: application/json' -d '{"message": "Hello!"}'
Press Ctrl-C to stop everything.
MSG
wait -n "${pids[@]}" || true
