"""The tests whose outcome depends on how turns travel and where the state
is kept (queueing, order, crashes, cancels, deletes, streaming), gathered
once: test_rabbitmq.py and test_redis_cluster.py run them all again, each on
a stack of its own, by importing them from here."""

from __future__ import annotations

from tests.e2e.test_chat import (
    test_cancel_a_running_job_stores_nothing,
    test_delete_removes_the_conversation,
    test_wait_mode_answers_with_the_reply,
)
from tests.e2e.test_edges import (
    test_a_cancel_either_wins_or_says_it_lost,
    test_delete_during_a_turn_wins,
)
from tests.e2e.test_queue import (
    test_a_stream_shows_reset_then_the_whole_reply_after_a_sigkill,
    test_a_worker_stopped_with_sigterm_finishes_its_running_turn_first,
    test_concurrent_messages_to_one_thread_apply_one_after_another,
    test_jobs_wait_out_an_s3_outage,
    test_messages_sent_one_after_another_are_stored_in_that_order,
    test_sigkilled_worker_turn_runs_again_elsewhere_and_is_stored_once,
)
from tests.e2e.test_stream import (
    test_cancel_a_queued_job_means_it_never_runs,
    test_cancel_a_running_stream_closes_the_llm_call,
    test_streamed_tokens_make_the_reply_that_is_stored,
    test_twenty_concurrent_streams_all_complete_in_order,
)

__all__ = [
    "test_a_cancel_either_wins_or_says_it_lost",
    "test_a_stream_shows_reset_then_the_whole_reply_after_a_sigkill",
    "test_a_worker_stopped_with_sigterm_finishes_its_running_turn_first",
    "test_cancel_a_queued_job_means_it_never_runs",
    "test_cancel_a_running_job_stores_nothing",
    "test_cancel_a_running_stream_closes_the_llm_call",
    "test_concurrent_messages_to_one_thread_apply_one_after_another",
    "test_delete_during_a_turn_wins",
    "test_delete_removes_the_conversation",
    "test_jobs_wait_out_an_s3_outage",
    "test_messages_sent_one_after_another_are_stored_in_that_order",
    "test_sigkilled_worker_turn_runs_again_elsewhere_and_is_stored_once",
    "test_streamed_tokens_make_the_reply_that_is_stored",
    "test_twenty_concurrent_streams_all_complete_in_order",
    "test_wait_mode_answers_with_the_reply",
]
