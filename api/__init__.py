"""The HTTP gateway: validates, queues, and reads results. Never imports worker/."""
