"""How many CPU threads the workers of this host use together, and a warning when they add up
to more than its cores: two workers with torch's default threads each served 2.9 requests/s on a
2-core machine where the same two with one thread each served 35.6 (issue 10).

The registry is a directory of small files, one per worker process (`<pid>.json`: its threads),
in the system's temporary directory: every worker of this user on this host sees the others.
Files of processes that are gone are ignored and removed. It cannot see workers in other
containers or of other users; the warning says what it counted.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
from pathlib import Path

log = logging.getLogger("pureinfer.worker")


def registry_dir() -> Path:
    return Path(tempfile.gettempdir()) / f"pureinfer-threads-{os.getuid()}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def register(threads: int, directory: Path | None = None) -> dict[int, int]:
    """Record this process's threads; return every live worker's (pid -> threads), this one's included."""
    d = directory or registry_dir()
    d.mkdir(parents=True, exist_ok=True)
    (d / f"{os.getpid()}.json").write_text(json.dumps({"threads": threads}))
    found: dict[int, int] = {}
    for f in d.glob("*.json"):
        try:
            pid = int(f.stem)
            n = int(json.loads(f.read_text())["threads"])
        except (ValueError, KeyError, OSError):
            continue
        if _alive(pid):
            found[pid] = n
        else:
            with contextlib.suppress(OSError):
                f.unlink()
    return found


def unregister(directory: Path | None = None) -> None:
    with contextlib.suppress(OSError):
        ((directory or registry_dir()) / f"{os.getpid()}.json").unlink()


def check_host(threads: int, directory: Path | None = None) -> bool:
    """Register and warn when the workers here use more threads than the host has cores. True: fine."""
    workers = register(threads, directory)
    total, cores = sum(workers.values()), os.cpu_count() or 1
    if total > cores:
        log.warning("the workers on this host use more CPU threads than it has cores; give each --threads "
                    "so that they add up to the cores (e.g. cores / workers)",
                    extra={"event": "threads_oversubscribed", "threads_total": total, "cores": cores,
                           "workers": len(workers), "threads_here": threads})
        return False
    return True
