# One image for the gateway, the workers and beat; docker-compose.yml picks the command.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONPATH=/app

WORKDIR /app

# The code stays root-owned so the service user cannot rewrite it; it writes only
# beat's schedule file and the metrics of every process (a volume starts as this
# directory, so with its owner). Its ids are fixed, 999 as Debian's first
# system ids gave it, so that Kubernetes' runAsUser (deploy/k8s) names it.
RUN groupadd --system --gid 999 app \
    && useradd --system --uid 999 --gid app --create-home --home-dir /home/app app \
    && install -d -o app -g app /var/lib/celery-beat /var/lib/chat-metrics

# Requirements first: code edits then reuse the cached dependency layer.
# Every pinned requirement ships manylinux wheels, so slim needs no compiler.
COPY requirements.txt ./
RUN pip install --no-cache-dir -r requirements.txt

COPY pyproject.toml ./
COPY api/ api/
COPY worker/ worker/
COPY shared/ shared/
COPY graphs/ graphs/

USER app

EXPOSE 8000

# No HEALTHCHECK here: it would apply to the worker and beat containers too,
# which serve no HTTP; docker-compose.yml sets one per service instead.
CMD ["uvicorn", "api.main:app", "--host", "0.0.0.0", "--port", "8000"]
