"""The circuit breaker on its own, driven by an injected clock."""

from __future__ import annotations

import threading

import pytest

from cachekit.backends.breaker import CircuitBreaker
from cachekit.exceptions import BackendUnavailableError


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def make(clock: FakeClock, **options: float) -> CircuitBreaker:
    params: dict[str, float] = {"failures": 3, "window": 10.0, "cooldown": 2.0, **options}
    return CircuitBreaker(
        failures=int(params["failures"]),
        window=params["window"],
        cooldown=params["cooldown"],
        clock=clock,
        name="redis 127.0.0.1:1",
    )


def test_stays_closed_below_the_threshold(clock: FakeClock) -> None:
    breaker = make(clock)
    breaker.failure()
    breaker.failure()
    breaker.before_call()
    assert breaker.state == "closed"
    assert breaker.snapshot()["recent_failures"] == 2


def test_opens_after_failures_within_window_and_fails_fast(clock: FakeClock) -> None:
    breaker = make(clock)
    for _ in range(3):
        breaker.failure()
    assert breaker.state == "open"
    with pytest.raises(BackendUnavailableError, match=r"redis 127\.0\.0\.1:1"):
        breaker.before_call()
    snap = breaker.snapshot()
    assert snap["trips"] == 1
    assert snap["rejections"] == 1
    assert snap["state"] == "open"


def test_failures_outside_the_window_do_not_add_up(clock: FakeClock) -> None:
    breaker = make(clock)
    breaker.failure()
    breaker.failure()
    clock.now += 10.5
    breaker.failure()
    assert breaker.state == "closed"


def test_a_success_resets_the_count(clock: FakeClock) -> None:
    breaker = make(clock)
    breaker.failure()
    breaker.failure()
    breaker.success()
    breaker.failure()
    breaker.failure()
    assert breaker.state == "closed"


def test_after_cooldown_exactly_one_probe_goes_through(clock: FakeClock) -> None:
    breaker = make(clock)
    for _ in range(3):
        breaker.failure()
    clock.now += 1.9
    with pytest.raises(BackendUnavailableError):
        breaker.before_call()
    clock.now += 0.2
    assert breaker.state == "half-open"
    breaker.before_call()  # the probe
    for _ in range(5):
        with pytest.raises(BackendUnavailableError):
            breaker.before_call()
    assert breaker.snapshot()["rejections"] == 6


def test_probe_success_closes(clock: FakeClock) -> None:
    breaker = make(clock)
    for _ in range(3):
        breaker.failure()
    clock.now += 2
    breaker.before_call()
    breaker.success()
    assert breaker.state == "closed"
    for _ in range(10):
        breaker.before_call()
    assert breaker.snapshot()["recent_failures"] == 0


def test_probe_failure_reopens_for_a_full_cooldown(clock: FakeClock) -> None:
    breaker = make(clock)
    for _ in range(3):
        breaker.failure()
    clock.now += 2
    breaker.before_call()
    breaker.failure()
    assert breaker.state == "open"
    assert breaker.snapshot()["trips"] == 2
    clock.now += 1.5
    with pytest.raises(BackendUnavailableError):
        breaker.before_call()
    clock.now += 0.5
    breaker.before_call()
    assert breaker.state == "half-open"


def test_a_probe_that_never_reports_does_not_wedge_the_breaker(clock: FakeClock) -> None:
    breaker = make(clock)
    for _ in range(3):
        breaker.failure()
    clock.now += 2
    breaker.before_call()  # this probe's caller vanishes without success()/failure()
    with pytest.raises(BackendUnavailableError):
        breaker.before_call()
    clock.now += 2
    breaker.before_call()  # a second probe is allowed after another cool-down


def test_a_late_failure_while_open_does_not_extend_it(clock: FakeClock) -> None:
    breaker = make(clock)
    for _ in range(3):
        breaker.failure()
    clock.now += 1
    breaker.failure()  # a call let through before the breaker opened times out now
    clock.now += 1
    assert breaker.state == "half-open"
    assert breaker.snapshot()["trips"] == 1


def test_one_probe_among_many_threads(clock: FakeClock) -> None:
    breaker = make(clock)
    for _ in range(3):
        breaker.failure()
    clock.now += 2
    allowed: list[int] = []
    barrier = threading.Barrier(16)

    def call(i: int) -> None:
        barrier.wait()
        try:
            breaker.before_call()
        except BackendUnavailableError:
            return
        allowed.append(i)

    threads = [threading.Thread(target=call, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(5)
    assert len(allowed) == 1
    assert breaker.snapshot()["rejections"] == 15


@pytest.mark.parametrize(
    "options",
    [
        pytest.param({"failures": 0}, id="no-failures"),
        pytest.param({"window": 0}, id="zero-window"),
        pytest.param({"cooldown": -1}, id="negative-cooldown"),
    ],
)
def test_bad_settings_are_refused(clock: FakeClock, options: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="must be"):
        make(clock, **options)
