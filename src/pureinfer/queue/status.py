"""Job status: an explicit state machine, used unchanged by the queue, the gateway's SQL store,
the API and webhooks.

    queued ──> running ──> succeeded
      │   ↖______│  │────> failed
      │  (handed │  └────> cancelled
      │   back)
      ├──────────────────> failed      (e.g. dead-lettered before it ever ran)
      └──────────────────> cancelled

`running -> queued` is the hand-back: a worker stopping (SIGTERM) or dying returns the job to
the queue, which delivers it again. Terminal states never change.
"""

from __future__ import annotations

from enum import StrEnum


class IllegalTransition(ValueError):
    """A status change the state machine does not allow (a bug, or a late duplicate event)."""


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    def is_terminal(self) -> bool:
        return self in TERMINAL

    def can_become(self, new: JobStatus) -> bool:
        return new in ALLOWED[self]

    def to(self, new: JobStatus) -> JobStatus:
        """The new status, or IllegalTransition."""
        if not self.can_become(new):
            raise IllegalTransition(f"job status {self.value} cannot become {new.value}")
        return new


TERMINAL = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED})
ALLOWED: dict[JobStatus, frozenset[JobStatus]] = {
    JobStatus.QUEUED: frozenset({JobStatus.RUNNING, JobStatus.FAILED, JobStatus.CANCELLED}),
    JobStatus.RUNNING: frozenset({JobStatus.QUEUED, JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED}),
    JobStatus.SUCCEEDED: frozenset(),
    JobStatus.FAILED: frozenset(),
    JobStatus.CANCELLED: frozenset(),
}
