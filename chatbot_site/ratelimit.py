"""Rate limits in Redis: GCRA (the generic cell rate algorithm, a token bucket kept as one
timestamp per key).

A limit of L per minute admits a burst of L and then one request every 60/L seconds — there is
no window boundary at which 2L get through. The check-and-update is one Lua script, so N
concurrent requests against a limit of L admit exactly L. The script reads Redis's own clock,
so web processes with skewed clocks agree.

If Redis is unreachable the limiter fails open (the request is served) and logs an error:
an outage of the limiter must not become an outage of the API. ``/v1/health`` reports Redis.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import structlog
from redis.exceptions import RedisError

from chatbot_site.redis import get_redis

log = structlog.get_logger(__name__)

# KEYS[1] = bucket key. ARGV = period_ms, limit, dry_run (1: report only, write nothing).
# Optional KEYS[2] = a guard bucket, ARGV[4] its limit (0: none): only looked at; while it is
# over its limit the request is refused without taking from KEYS[1] (a fifth value, 1, says so).
# Optional last key = a shared bucket, ARGV[5] its limit: the request takes from it too, and is
# refused, taking from neither, while it is empty (a sixth value, 1, says so); ``remaining`` is
# then the lower of the two buckets'.
# Returns {allowed (0/1), remaining, retry_after_ms, reset_ms}: reset_ms is the time until one
# more request is admitted than ``remaining`` says (0 when the bucket is full), so on a refusal
# it is retry_after_ms.
# Times are whole microseconds (exact in Lua's doubles until the year 2255), the interval rounded
# down: a burst of exactly the limit fits the period. With fractional milliseconds stored by
# tostring (14 significant digits), the rounding of the stored time made the burst one short for
# most limits (9, 13, 19 ...) when the requests came within a millisecond: `RateLimit-Remaining: 1`,
# then a 429.
_GCRA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local period = tonumber(ARGV[1]) * 1000
local limit = tonumber(ARGV[2])
local dry_run = ARGV[3] == '1'
local guard_limit = tonumber(ARGV[4] or '0')
local shared_limit = tonumber(ARGV[5] or '0')
if guard_limit > 0 then
    local guard_interval = math.max(1, math.floor(period / guard_limit))
    local guard_tat = tonumber(redis.call('GET', KEYS[2]) or now)
    if guard_tat < now then guard_tat = now end
    local guard_allow_at = guard_tat + guard_interval - period
    if guard_allow_at > now then
        local wait = math.ceil((guard_allow_at - now) / 1000)
        return {0, 0, wait, wait, 1}
    end
end
local function next_tat(key, lim)
    local interval = math.max(1, math.floor(period / lim))
    local tat = tonumber(redis.call('GET', key) or now)
    if tat < now then tat = now end
    return interval, tat, tat + interval
end
local interval, tat, new_tat = next_tat(KEYS[1], limit)
if new_tat - period > now then
    local wait = math.ceil((new_tat - period - now) / 1000)
    return {0, 0, wait, wait}
end
local shared_interval, shared_tat, shared_new
if shared_limit > 0 then
    shared_interval, shared_tat, shared_new = next_tat(KEYS[#KEYS], shared_limit)
    if shared_new - period > now then
        local wait = math.ceil((shared_new - period - now) / 1000)
        return {0, 0, wait, wait, 0, 1}
    end
end
if not dry_run then
    redis.call('SET', KEYS[1], string.format('%d', new_tat), 'PX',
               math.ceil((new_tat - now) / 1000) + 1)
    if shared_new then
        redis.call('SET', KEYS[#KEYS], string.format('%d', shared_new), 'PX',
                   math.ceil((shared_new - now) / 1000) + 1)
    end
else
    new_tat = tat
    shared_new = shared_tat
end
local function left(stored, lim, iv)
    local room = period - (stored - now)
    local remaining = math.min(lim, math.floor(room / iv))
    local next_ms = 0
    if remaining < lim then
        next_ms = math.ceil(((remaining + 1) * iv - room) / 1000)
    end
    return remaining, next_ms
end
local remaining, next_ms = left(new_tat, limit, interval)
if shared_new then
    local shared_remaining, shared_next = left(shared_new, shared_limit, shared_interval)
    if shared_remaining < remaining then
        remaining, next_ms = shared_remaining, shared_next
    elseif shared_remaining == remaining and shared_next > next_ms then
        next_ms = shared_next
    end
end
return {1, remaining, 0, next_ms}
"""

PERIOD_MS = 60_000


@dataclass(frozen=True)
class Decision:
    allowed: bool
    limit: int
    remaining: int
    retry_after_seconds: int  # 0 when allowed
    # Until one more request is admitted than ``remaining`` says: 0 with the bucket full; on a
    # refusal, ``retry_after_seconds`` (it was the time until the bucket is full again: a 429
    # said ``RateLimit-Reset: 60`` and ``Retry-After: 30`` at 2 a minute).
    reset_seconds: int
    degraded: bool = False  # Redis unreachable: allowed without counting
    guarded: bool = False  # refused by the guard bucket (``hit(guard=...)``), not this one
    shared: bool = False  # refused by the shared bucket (``hit(shared=...)``), not this one

    def headers(self) -> dict[str, str]:
        if self.degraded:
            return {}
        headers = {
            "RateLimit-Limit": str(self.limit),
            "RateLimit-Remaining": str(self.remaining),
            "RateLimit-Reset": str(self.reset_seconds),
        }
        if not self.allowed:
            headers["Retry-After"] = str(self.retry_after_seconds)
        return headers


def hit(
    key: str,
    *,
    limit: int,
    dry_run: bool = False,
    guard: tuple[str, int] | None = None,
    shared: tuple[str, int] | None = None,
) -> Decision:
    """Take one request from the bucket ``key`` (limit per minute); ``dry_run`` only looks.
    ``guard`` (bucket, limit): another bucket, only looked at in the same round trip; while it
    is over its limit the request is refused (``guarded``) and nothing is taken from ``key``.
    ``shared`` (bucket, limit): another bucket the request takes from too, in the same round
    trip; while it is empty the request is refused (``shared``), taking from neither."""
    if limit < 1 or any(other is not None and other[1] < 1 for other in (guard, shared)):
        raise ValueError("limit must be at least 1")
    # "rl2": buckets in microseconds; the millisecond buckets of the process before (a rolling
    # deploy runs both) are other keys, not read as a time far ahead.
    keys, args = [f"chatbot:rl2:{key}"], [PERIOD_MS, limit, 1 if dry_run else 0]
    if guard is not None:
        keys.append(f"chatbot:rl2:{guard[0]}")
    args.append(guard[1] if guard is not None else 0)
    if shared is not None:
        keys.append(f"chatbot:rl2:{shared[0]}")
        args.append(shared[1])
    try:
        script = get_redis().register_script(_GCRA)  # evalsha; loads the script once per server
        allowed, remaining, retry_ms, reset_ms, *why = script(keys=keys, args=args)
    except RedisError as exc:
        log.error("rate_limit_unavailable", error=type(exc).__name__, bucket=key.split(":")[0])
        return Decision(True, limit, limit, 0, 0, degraded=True)
    wait = max(1, math.ceil(int(retry_ms) / 1000))  # whole seconds, never "retry in 0"
    return Decision(
        allowed=bool(allowed),
        limit=limit,
        remaining=int(remaining),
        retry_after_seconds=wait if not allowed else 0,
        reset_seconds=wait if not allowed else math.ceil(int(reset_ms) / 1000),
        guarded=bool(why and why[0]),
        shared=len(why) > 1 and bool(why[1]),
    )
