"""Everything a running worker holds, in one place: settings, lifecycle, admission, the loaded
servings. Routes look servings up here at call time, so a model that is not (yet) loaded is a
WORKER_UNAVAILABLE answer, not a crash."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pureinfer.api.admission import Admission
from pureinfer.errors import WorkerUnavailable
from pureinfer.metrics import RollingWindow
from pureinfer.settings import WorkerSettings
from pureinfer.worker.state import Lifecycle, WorkerState

if TYPE_CHECKING:
    from pureinfer.api.native.serving import TextServing


@dataclass
class WorkerRuntime:
    settings: WorkerSettings
    lifecycle: Lifecycle = field(default_factory=Lifecycle)
    window: RollingWindow = field(default_factory=RollingWindow)
    started_at: float = field(default_factory=time.monotonic)
    text: TextServing | None = None
    image: Any | None = None  # pureinfer.api.image.serving.ImageServing
    device: str | None = None
    dtype: str | None = None
    admission: Admission = field(init=False)

    def __post_init__(self) -> None:
        self.window = RollingWindow(self.settings.metrics_window_s)
        self.admission = Admission.for_settings(self.settings,
                                                is_ready=lambda: self.lifecycle.state == WorkerState.READY)

    @property
    def worker_type(self) -> str:
        return self.settings.role.value

    def require_text(self) -> TextServing:
        if self.text is None:
            raise WorkerUnavailable("No text model is loaded on this worker (yet)")
        return self.text

    def require_image(self) -> Any:
        if self.image is None:
            raise WorkerUnavailable("No image model is loaded on this worker (yet)")
        return self.image

    def engines_alive(self) -> bool:
        alive = True
        if self.text is not None:
            alive &= self.text.is_alive()
        if self.image is not None:
            alive &= bool(self.image.is_alive())
        return alive

    def ready(self) -> bool:
        return self.lifecycle.state == WorkerState.READY and self.engines_alive()

    def uptime_s(self) -> float:
        return time.monotonic() - self.started_at
