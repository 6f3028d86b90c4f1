"""On a real redis-server the reader's restart check uses the run_id (fakeredis has none; see
tests/unit/test_source_restart.py), so it must be there, and a clean read must not trip the check."""

from __future__ import annotations

import pytest
import redis

from qtsafe.simulate import generate
from qtsafe.telemetry import RedisStreamSource
from tests.conftest import STREAM, RedisServer, xadd_entries

pytestmark = pytest.mark.integration


def test_a_real_server_reports_a_run_id(redis_server: RedisServer, real_redis: redis.Redis) -> None:
    xadd_entries(real_redis, [{"id": e.id, "fields": e.fields} for e in generate("healthy", 50)])
    source = RedisStreamSource(redis_server.client(), STREAM, page_size=7, url=redis_server.url)
    mark = source.mark()
    assert mark.run_id is not None and len(mark.run_id) == 40 and int(mark.run_id, 16) >= 0
    assert mark.exists and mark.entries_added == 50
    assert sum(len(page) for page in source.pages("-", "+", since=mark)) == 50
    source.verify_unchanged(mark)


def test_a_missing_key_is_marked_absent_not_an_error(redis_server: RedisServer, real_redis: redis.Redis) -> None:
    source = RedisStreamSource(redis_server.client(), STREAM, url=redis_server.url)
    assert source.mark().exists is False
    assert list(source.pages("-", "+")) == []
