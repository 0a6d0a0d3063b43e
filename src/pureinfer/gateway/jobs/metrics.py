"""Job metrics for the gateway's /metrics: queue depth per worker type and jobs per status.

Both need I/O (Redis, SQL) that a scrape must not wait on, so a loop refreshes a snapshot every
few seconds and the collector reads it."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from pureinfer.gateway.jobs import repository as repo
from pureinfer.queue.status import JobStatus

if TYPE_CHECKING:
    from pureinfer.gateway.jobs.service import JobService

log = logging.getLogger("pureinfer.gateway.jobs")
WORKER_TYPES = ("chat", "image")


@dataclass
class JobStats:
    depth: dict[str, int] = field(default_factory=dict)
    states: dict[str, int] = field(default_factory=dict)
    dead_letters: dict[str, int] = field(default_factory=dict)

    def families(self) -> Iterable[Metric]:
        depth = GaugeMetricFamily("pureinfer_gateway_queue_depth", "Jobs on the queue (waiting or running)",
                                  labels=["worker_type"])
        for wt, n in self.depth.items():
            depth.add_metric([wt], float(n))
        yield depth
        dead = GaugeMetricFamily("pureinfer_gateway_queue_dead_letters", "Jobs in the dead letters",
                                 labels=["worker_type"])
        for wt, n in self.dead_letters.items():
            dead.add_metric([wt], float(n))
        yield dead
        states = GaugeMetricFamily("pureinfer_gateway_jobs", "Jobs in the store by status", labels=["status"])
        for status in JobStatus:
            states.add_metric([status.value], float(self.states.get(status.value, 0)))
        yield states


async def refresh(stats: JobStats, service: JobService, every_s: float = 5.0) -> None:
    while True:
        try:
            q = service.queue
            for wt in WORKER_TYPES:
                stats.depth[wt] = await q.depth(wt)
                stats.dead_letters[wt] = len(await q.dead_letters(wt))
            stats.states = await service._db(repo.count_by_status)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.warning("job metrics not refreshed", exc_info=True, extra={"event": "job_metrics_error"})
        await asyncio.sleep(every_s)
