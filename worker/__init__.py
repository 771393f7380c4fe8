"""The Celery workers: they run chat turns and clean up idle conversations."""
