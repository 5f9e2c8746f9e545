"""The one retry policy (`ccfcache.retry`): Retry-After values, the backoff formula, and the
per-host gate shared by a process's workers. Retries against a real server that answers
429/503 are in test_transport.py."""

from __future__ import annotations

import email.utils
import random
import threading
import time

import pytest

from ccfcache.retry import (
    MAX_RETRY_AFTER_S,
    HostGate,
    Policy,
    gate_for,
    retry_after_seconds,
    sleep_before_retry,
)


def test_retry_after_values() -> None:
    """The pure decision: seconds or an HTTP date, capped, nonsense ignored."""
    now = 1_000_000_000.0
    assert retry_after_seconds("7", now=now) == 7
    assert retry_after_seconds(email.utils.formatdate(now + 30, usegmt=True), now=now) == 30
    assert retry_after_seconds(email.utils.formatdate(now - 30, usegmt=True), now=now) == 0
    assert retry_after_seconds("86400", now=now, cap=60) == 60
    assert retry_after_seconds("soon", now=now) is None
    assert retry_after_seconds("nan", now=now) is None


@pytest.mark.parametrize("seed", range(5))
def test_backoff_doubles_per_attempt_with_jitter_between_half_and_one_and_a_half(seed) -> None:
    random.seed(seed)
    policy = Policy(backoff=0.5)
    for attempt in range(20):
        base = 0.5 * 2 ** min(attempt, 16)
        delay = policy.delay(attempt)
        assert 0.5 * base <= delay < 1.5 * base


def test_retry_after_raises_the_delay_but_never_past_its_cap() -> None:
    policy = Policy(backoff=0.001, max_retry_after=10.0)
    assert policy.delay(0, retry_after=3.0) == 3.0
    assert policy.delay(0, retry_after=3600.0) == 10.0
    assert policy.delay(0, retry_after=0.0) < 0.0015  # the backoff when it is longer
    assert Policy().max_retry_after == MAX_RETRY_AFTER_S


def test_host_gate_never_lets_more_than_its_limit_in_flight() -> None:
    gate = HostGate(3)
    inside, most = [0], [0]
    lock = threading.Lock()

    def request() -> None:
        with gate.slot():
            with lock:
                inside[0] += 1
                most[0] = max(most[0], inside[0])
            time.sleep(0.01)
            with lock:
                inside[0] -= 1

    threads = [threading.Thread(target=request) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert most[0] == gate.peak == 3
    assert inside[0] == 0


def test_gate_for_is_one_gate_per_host_and_port_and_takes_the_newest_limit() -> None:
    first = gate_for("Mirror-Retry.example", 8080, limit=2)
    assert gate_for("mirror-retry.example", 8080) is first
    assert gate_for("mirror-retry.example", 8081) is not first
    assert gate_for("mirror-retry.example", 8080, limit=5).limit == 5
    first.set_limit(0)
    assert first.limit == 1  # never below one request


def test_a_servers_retry_after_pauses_the_hosts_other_workers() -> None:
    gate = HostGate(4)
    before = time.monotonic()
    sleep_before_retry(Policy(backoff=0.0), 0, retry_after=0.02, gate=gate)
    assert gate.paused_until >= before + 0.02
    untouched = HostGate(4)
    sleep_before_retry(Policy(backoff=0.0), 0, gate=untouched)  # no Retry-After: no pause
    assert untouched.paused_until == 0.0
