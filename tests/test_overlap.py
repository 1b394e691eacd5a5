"""The write-behind thread convert uses: order, errors, and nothing in flight after the block."""

import threading
import time

import pytest

from kspacify.overlap import WriteBehind


def test_tasks_run_in_the_order_given_on_one_other_thread():
    done, threads = [], set()

    def task(i):
        def run():
            time.sleep(0.002 * (i % 3))  # uneven durations must not reorder
            threads.add(threading.current_thread())
            done.append(i)
        return run

    with WriteBehind(depth=2) as behind:
        for i in range(20):
            behind.submit(task(i))
    assert done == list(range(20))
    assert len(threads) == 1 and threading.main_thread() not in threads


def test_at_most_depth_tasks_wait():
    started, release = [], threading.Event()

    def blocked():
        started.append(1)
        release.wait(5)

    with WriteBehind(depth=1) as behind:
        behind.submit(blocked)
        waiter = threading.Thread(target=lambda: behind.submit(lambda: None))
        waiter.start()
        waiter.join(0.2)
        assert waiter.is_alive()  # the second submit waits for the first task
        release.set()
        waiter.join(5)
        assert not waiter.is_alive()


def test_a_task_error_is_raised_at_the_next_submit_or_at_the_end():
    def fail():
        raise ValueError("bad slab")

    with pytest.raises(ValueError, match="bad slab"):
        with WriteBehind() as behind:
            behind.submit(fail)
            behind.submit(lambda: None)
    with pytest.raises(ValueError, match="bad slab"):
        with WriteBehind(depth=4) as behind:
            behind.submit(fail)


def test_leaving_by_an_error_waits_for_the_running_task_and_drops_the_queued():
    ran = []

    def slow():
        time.sleep(0.2)
        ran.append("slow")

    with pytest.raises(KeyboardInterrupt):
        with WriteBehind(depth=3) as behind:
            behind.submit(slow)
            behind.submit(lambda: ran.append("queued"))
            time.sleep(0.05)
            raise KeyboardInterrupt
    assert ran == ["slow"]  # finished before the block was left (no write under a closing file); the queued one dropped


def test_depth_must_be_positive():
    with pytest.raises(ValueError):
        WriteBehind(depth=0)
