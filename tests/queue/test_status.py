import pytest

from pureinfer.queue.status import IllegalTransition, JobStatus


def test_the_happy_path_and_terminal_states() -> None:
    s = JobStatus.QUEUED.to(JobStatus.RUNNING).to(JobStatus.SUCCEEDED)
    assert s.is_terminal()
    assert not JobStatus.RUNNING.is_terminal()


@pytest.mark.parametrize("terminal", [JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED])
@pytest.mark.parametrize("new", list(JobStatus))
def test_terminal_states_never_change(terminal: JobStatus, new: JobStatus) -> None:
    with pytest.raises(IllegalTransition):
        terminal.to(new)


def test_a_queued_job_cannot_succeed_without_running() -> None:
    with pytest.raises(IllegalTransition):
        JobStatus.QUEUED.to(JobStatus.SUCCEEDED)


def test_a_running_job_may_be_handed_back() -> None:
    assert JobStatus.RUNNING.to(JobStatus.QUEUED) is JobStatus.QUEUED
