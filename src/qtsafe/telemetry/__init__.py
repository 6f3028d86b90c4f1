"""Telemetry: sources (Redis stream, JSONL export) and parsing into numpy columns."""

from __future__ import annotations

from qtsafe.telemetry.columns import ModelColumns, Telemetry
from qtsafe.telemetry.parse import TelemetryBuilder
from qtsafe.telemetry.sources import JsonlSource, RedisStreamSource, Source, mask_url, open_source, redis_client

__all__ = [
    "JsonlSource",
    "ModelColumns",
    "RedisStreamSource",
    "Source",
    "Telemetry",
    "TelemetryBuilder",
    "mask_url",
    "open_source",
    "redis_client",
]
