"""The host's thread registry: each worker records its threads; a total above the cores warns."""

from __future__ import annotations

import json
import logging
import os

from pureinfer.worker import threads


def test_workers_adding_up_to_more_threads_than_cores_warn(tmp_path, caplog) -> None:
    cores = os.cpu_count() or 1
    (tmp_path / f"{os.getppid()}.json").write_text(json.dumps({"threads": cores}))  # a live process
    (tmp_path / "999999999.json").write_text(json.dumps({"threads": 64}))  # gone: ignored and removed
    with caplog.at_level(logging.WARNING, logger="pureinfer.worker"):
        assert threads.check_host(1, tmp_path) is False
    [record] = [r for r in caplog.records if getattr(r, "event", None) == "threads_oversubscribed"]
    assert (record.threads_total, record.cores, record.workers) == (cores + 1, cores, 2)
    assert not (tmp_path / "999999999.json").exists()
    threads.unregister(tmp_path)
    assert not (tmp_path / f"{os.getpid()}.json").exists()


def test_workers_that_fit_the_cores_do_not_warn(tmp_path, caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="pureinfer.worker"):
        assert threads.check_host(1, tmp_path) is True
    assert not [r for r in caplog.records if getattr(r, "event", None) == "threads_oversubscribed"]
    threads.unregister(tmp_path)
