from __future__ import annotations

import concurrent.futures
import threading

import pytest

from chatbot_site import ratelimit
from chatbot_site.redis import get_redis
from tests.world import build_tenant

pytestmark = pytest.mark.django_db


def test_parallel_hits_against_a_limit_admit_exactly_the_limit():
    barrier = threading.Barrier(50)

    def one(_: int) -> bool:
        barrier.wait()
        return ratelimit.hit("key:parallel", limit=10).allowed

    with concurrent.futures.ThreadPoolExecutor(max_workers=50) as pool:
        results = list(pool.map(one, range(50)))
    assert results.count(True) == 10
    assert results.count(False) == 40


@pytest.mark.parametrize("limit", [9, 13, 19, 22, 23, 26, 113])
def test_a_burst_within_a_millisecond_admits_exactly_the_limit(limit):
    """Requests that reach Redis within the same millisecond (here: one MULTI of the limiter's
    script): the stored time, fractional milliseconds rounded to 14 digits, made the burst one
    short for these limits, after ``RateLimit-Remaining: 1``."""
    script = get_redis().register_script(ratelimit._GCRA)
    pipe = get_redis().pipeline(transaction=True)
    for _ in range(limit + 1):
        script(keys=["chatbot:rl:key:burst"], args=[ratelimit.PERIOD_MS, limit, 0], client=pipe)
    results = pipe.execute()
    assert [allowed for allowed, *_ in results] == [1] * limit + [0]
    assert [remaining for _, remaining, *_ in results] == [*range(limit - 1, -1, -1), 0]


def test_bucket_refills_steadily_not_at_a_window_boundary():
    for _ in range(6):
        assert ratelimit.hit("key:gcra", limit=6).allowed
    denied = ratelimit.hit("key:gcra", limit=6)
    assert not denied.allowed
    # One request back every 60/6 = 10 s; not "wait for the next minute".
    assert 1 <= denied.retry_after_seconds <= 10
    assert denied.headers()["Retry-After"] == str(denied.retry_after_seconds)
    assert denied.remaining == 0


def test_dry_run_reports_without_taking():
    for _ in range(3):
        assert ratelimit.hit("key:peek", limit=3, dry_run=True).remaining == 3
    assert ratelimit.hit("key:peek", limit=3).remaining == 2


def test_redis_down_fails_open_and_says_so(settings, tmp_path, caplog):
    settings.REDIS_URL = f"unix://{tmp_path}/gone.sock?db=0"
    get_redis.cache_clear()
    decision = ratelimit.hit("key:down", limit=1)
    second = ratelimit.hit("key:down", limit=1)
    assert decision.allowed and second.allowed
    assert decision.degraded
    assert decision.headers() == {}


def test_keyed_responses_carry_ratelimit_headers_and_429_has_retry_after(api_client):
    side = build_tenant("limits")
    side.admin_key.rate_limit_per_minute = 2
    side.admin_key.save(update_fields=["rate_limit_per_minute"])
    client = side.client()
    first, second, third = (client.get("/v1/scopes") for _ in range(3))
    assert [r.status_code for r in (first, second, third)] == [200, 200, 429]
    assert (first["RateLimit-Limit"], first["RateLimit-Remaining"]) == ("2", "1")
    assert second["RateLimit-Remaining"] == "0"
    assert int(third["Retry-After"]) >= 1
    assert third["RateLimit-Remaining"] == "0"
    assert third["RateLimit-Reset"] == third["Retry-After"]
    assert third.json()["error"]["code"] == "rate_limited"


def test_ratelimit_reset_is_when_one_more_request_is_admitted():
    """RateLimit-Reset said when the bucket would be full again: at 2 a minute a 429 said
    ``RateLimit-Reset: 60`` and ``Retry-After: 30`` (and the last request admitted, with
    nothing remaining, 60 too). Now it is the seconds until one more request is admitted than
    RateLimit-Remaining says: on a 429 the same as Retry-After; 0 with the bucket full."""
    assert ratelimit.hit("key:reset", limit=2, dry_run=True).reset_seconds == 0
    first, last, refused = (ratelimit.hit("key:reset", limit=2) for _ in range(3))
    assert (first.remaining, last.remaining, refused.allowed) == (1, 0, False)
    assert 1 <= first.reset_seconds <= 30  # a second request is admitted now; a third in 30 s
    assert 1 <= last.reset_seconds <= 30
    assert refused.reset_seconds == refused.retry_after_seconds <= last.reset_seconds
    headers = refused.headers()
    assert headers["RateLimit-Reset"] == headers["Retry-After"] == str(refused.retry_after_seconds)


def test_tenant_default_applies_when_the_key_has_no_limit():
    side = build_tenant("defaults")
    side.tenant.default_rate_limit_per_minute = 7
    side.tenant.save(update_fields=["default_rate_limit_per_minute"])
    assert side.client().get("/v1/scopes")["RateLimit-Limit"] == "7"


def test_api_answers_when_redis_is_down(settings, tmp_path):
    side = build_tenant("noredis")
    settings.REDIS_URL = f"unix://{tmp_path}/gone.sock?db=0"
    get_redis.cache_clear()
    response = side.client().get("/v1/scopes")
    assert response.status_code == 200
    assert "RateLimit-Limit" not in response


def test_a_guard_bucket_over_its_limit_refuses_without_taking_from_the_bucket():
    """One round trip checks a key's bucket and its address's failed credentials: while the
    guard is over its limit the request is refused and the key's bucket is left as it was."""
    guard = ("authfail:192.0.2.1", 2)
    assert ratelimit.hit("key:guarded", limit=5, guard=guard).remaining == 4
    for _ in range(2):
        assert ratelimit.hit(guard[0], limit=2).allowed
    refused = ratelimit.hit("key:guarded", limit=5, guard=guard)
    assert (refused.allowed, refused.guarded) == (False, True)
    assert refused.retry_after_seconds >= 1
    assert ratelimit.hit("key:guarded", limit=5, dry_run=True).remaining == 4  # nothing taken
    other = ratelimit.hit("key:guarded", limit=5, guard=("authfail:192.0.2.2", 2))
    assert (other.allowed, other.guarded, other.remaining) == (True, False, 3)


@pytest.mark.parametrize("guard", [None, ("authfail:192.0.2.3", 100)])
def test_a_shared_bucket_is_taken_from_too_and_refuses_taking_from_neither(guard):
    """Keys made by a bot-limited key take from its bucket as well as their own
    (``ApiKey.rate_budget``): ``remaining`` is the lower of the two, and while the shared one
    is empty a request is refused (``shared``) and its own bucket is left as it was."""
    shared = ("key:maker", 3)
    first = ratelimit.hit("key:made", limit=5, guard=guard, shared=shared)
    assert (first.allowed, first.remaining) == (True, 2)  # the shared 3, not its own 5
    assert ratelimit.hit(shared[0], limit=3).remaining == 1  # the maker's own requests
    assert ratelimit.hit("key:other-made", limit=5, guard=guard, shared=shared).remaining == 0
    refused = ratelimit.hit("key:made", limit=5, guard=guard, shared=shared)
    assert (refused.allowed, refused.shared, refused.guarded) == (False, True, False)
    assert refused.retry_after_seconds >= 1
    assert ratelimit.hit("key:made", limit=5, dry_run=True).remaining == 4  # nothing taken
