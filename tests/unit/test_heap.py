"""calico.heap's holds: collections stop for a bulk load and resume after it, nested and
from several threads, and a release without a hold changes nothing."""

from __future__ import annotations

import gc
import threading

from calico import heap


def test_holds_nest_and_the_last_release_resumes_collections():
    assert gc.isenabled()
    heap.hold()
    heap.hold()
    assert not gc.isenabled()
    heap.release()
    assert not gc.isenabled()  # one hold is left
    heap.release()
    assert gc.isenabled()
    heap.release()  # nothing held: nothing to do
    assert gc.isenabled()
    heap.thaw()


def test_what_a_load_made_is_frozen_when_it_ends():
    heap.hold()
    made = [{"n": i} for i in range(1000)]
    frozen_before = gc.get_freeze_count()
    heap.release()
    assert gc.get_freeze_count() >= frozen_before + len(made)
    assert gc.get_count()[0] < 700  # no young collection due at once to walk them
    heap.thaw()


def test_holds_from_threads():
    ready = threading.Barrier(5)

    def load() -> None:
        heap.hold()
        ready.wait()
        heap.release()

    threads = [threading.Thread(target=load) for _ in range(4)]
    for t in threads:
        t.start()
    ready.wait()  # all four hold now
    assert not gc.isenabled()
    for t in threads:
        t.join()
    assert gc.isenabled()
    heap.thaw()
