"""Prometheus metrics of the image surface (default registry, served by the worker's /metrics)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

IMAGES_GENERATED = Counter("pureinfer_images_generated", "Images generated")
IMAGE_REQUESTS = Counter("pureinfer_image_requests", "Image requests by outcome (ok or error code)", ["outcome"])
SECONDS_PER_IMAGE = Histogram(
    "pureinfer_image_seconds_per_image", "Pipeline seconds per image (a batch's time over its images)",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 32, 64),
)
IMAGE_LATENCY = Histogram(
    "pureinfer_image_request_seconds", "Admission to response for an image request",
    buckets=(0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 32, 64, 128),
)
BATCH_SIZE = Histogram("pureinfer_image_batch_size", "Images per pipeline call", buckets=(1, 2, 3, 4, 6, 8, 12, 16))
QUEUE_DEPTH = Gauge("pureinfer_image_queue_depth", "Images waiting for the image engine")
