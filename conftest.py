"""Fixtures shared by every app's tests: real PostgreSQL (pytest-django's test database on the
embedded server or DATABASE_URL), real Redis (database REDIS_DB=15), real processes."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis
from rest_framework.test import APIClient

from chatbot_site.redis import get_redis


@pytest.fixture(autouse=True)
def _clean_redis() -> Iterator[None]:
    """Each test starts with an empty Redis database of its own (the test settings' REDIS_DB)."""
    get_redis.cache_clear()
    get_redis().flushdb()
    yield
    get_redis.cache_clear()


@pytest.fixture
def redis_client() -> redis.Redis:
    return get_redis()


@pytest.fixture
def api_client() -> APIClient:
    return APIClient()


@pytest.fixture
def world():
    """Two tenants, each with keys, a scope, a bot searching a dataset with a document, a
    conversation with a message, usage and audit history. ``world.a`` / ``world.b``."""
    from tests.world import build_world

    return build_world()
