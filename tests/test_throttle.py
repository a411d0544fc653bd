"""The send throttle (`_throttle.py`): how many attempts may be under way at once (AIMD), and
Retry-After pauses shared by every sender. Driven by hand, with a made-up clock and sleep, as
tenacity tests its strategies; threads only where a wait must be seen to end."""

from __future__ import annotations

import threading

from bearlumen._throttle import SendThrottle


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_retry_after_pauses_every_sender_until_it_is_over() -> None:
    clock = FakeClock()
    throttle = SendThrottle(4, clock=clock)
    throttle.wait_turn(lambda: False)  # sender A's attempt ...
    throttle.attempt_failed(retry_after=2.0)  # ... is refused with Retry-After: 2
    started_at: list[float] = []

    def sender_b() -> None:  # was not refused itself, and must wait all the same
        throttle.wait_turn(lambda: False)
        started_at.append(clock.now)

    thread = threading.Thread(target=sender_b)
    thread.start()
    assert throttle.pause_left() == 2.0
    clock.now = 101.0
    throttle.wake_all()
    assert throttle.pause_left() == 1.0
    clock.now = 102.0
    throttle.wake_all()
    thread.join(30)
    assert started_at and started_at[0] >= 102.0


def test_concurrency_halves_while_the_server_refuses_and_grows_back_one_by_one() -> None:
    throttle = SendThrottle(8)
    for _ in range(8):
        throttle.wait_turn(lambda: False)
    for expected in (4.0, 2.0, 1.0, 1.0):
        throttle.attempt_failed(retry_after=None)
        assert throttle.limit == expected
    # Four attempts failed and will retry; four are still under way: no new one may start.
    assert throttle.sending == 4
    blocked = threading.Event()
    went = threading.Event()

    def fifth() -> None:
        blocked.set()
        throttle.wait_turn(lambda: False)
        went.set()

    thread = threading.Thread(target=fifth)
    thread.start()
    assert blocked.wait(30)
    for _ in range(4):
        throttle.attempt_done(delivered=True)
    thread.join(30)
    assert went.is_set()
    assert throttle.limit == 5.0  # 1, then +1 for each of the four delivered batches
    for _ in range(10):
        throttle.wait_turn(lambda: False)
        throttle.attempt_done(delivered=True)
    assert throttle.limit == 8.0  # never above max_in_flight


def test_giving_up_ends_every_wait_at_once() -> None:
    throttle = SendThrottle(1, clock=FakeClock())
    throttle.wait_turn(lambda: False)
    throttle.attempt_failed(retry_after=3600)
    stop = threading.Event()
    thread = threading.Thread(target=throttle.wait_turn, args=(stop.is_set,))
    thread.start()
    stop.set()
    throttle.wake_all()
    thread.join(30)
    assert not thread.is_alive()


def test_an_injected_sleep_serves_a_pause_once_and_only_what_is_left() -> None:
    # A test's sleep returns at once and the made-up clock stays where it is: the pause must
    # still be slept once, not once per look at the clock.
    clock = FakeClock()
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        assert len(slept) == 1, f"the pause was slept again: {slept}"

    throttle = SendThrottle(2, clock=clock, sleep=sleep)
    throttle.wait_turn(lambda: False)
    throttle.attempt_failed(retry_after=5.0)
    clock.now += 1.0  # a second passed before the next attempt asked for its turn
    throttle.wait_turn(lambda: False)
    assert slept == [4.0]  # what was left of the pause
    throttle.attempt_failed(retry_after=None)
    throttle.wait_turn(lambda: False)  # the same pause, already served: no sleep
    assert slept == [4.0]


def test_a_pause_already_slept_by_the_caller_is_not_slept_again() -> None:
    # A sender that waited out its retry delay on an injected sleep says so (slept_until): the
    # pause it covered is not slept a second time, though the made-up clock never moved.
    clock = FakeClock()
    slept: list[float] = []
    throttle = SendThrottle(1, clock=clock, sleep=slept.append)
    throttle.wait_turn(lambda: False)
    throttle.attempt_failed(retry_after=3.0)
    throttle.wait_turn(lambda: False, slept_until=clock.now + 3.0)
    assert slept == []
    assert throttle.sending == 1


def test_a_larger_retry_after_extends_the_pause_and_a_smaller_one_never_shortens_it() -> None:
    clock = FakeClock()
    throttle = SendThrottle(4, clock=clock)
    for _ in range(3):
        throttle.wait_turn(lambda: False)
    throttle.attempt_failed(retry_after=10.0)
    throttle.attempt_failed(retry_after=2.0)
    assert throttle.pause_left() == 10.0
    throttle.attempt_failed(retry_after=30.0)
    assert throttle.pause_left() == 30.0
    clock.now += 31.0
    assert throttle.pause_left() == 0.0
