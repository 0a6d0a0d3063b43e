"""Job queues: `JobQueue` (base.py) with an in-process backend (memory.py) and Redis Streams
(redis_streams.py), chosen by URL (backends.py); job status as a state machine (status.py).
Imports only core modules."""

from pureinfer.queue.backends import open_queue
from pureinfer.queue.base import Delivery, Event, JobQueue
from pureinfer.queue.status import IllegalTransition, JobStatus

__all__ = ["Delivery", "Event", "IllegalTransition", "JobQueue", "JobStatus", "open_queue"]
