"""The follower process's frames (console/follower_process.py): what one end writes the
other reads back whole; a frame cut short, or a pipe closed under the reader, is the end
of the stream, not an error or a half frame."""

from __future__ import annotations

import io
import os
import pickle
import threading
import time

from console.follower_process import HEADER, _read_frame


def frame_bytes(frame: tuple) -> bytes:
    body = pickle.dumps(frame, protocol=pickle.HIGHEST_PROTOCOL)
    return HEADER.pack(len(body)) + body


def test_frames_read_back_in_order_then_the_end():
    page = ("page", [("/calico/k", b"{}", 7, 3)], [None])
    stream = io.BytesIO(frame_bytes(page) + frame_bytes(("snapshot", 7)))
    assert _read_frame(stream) == page
    assert _read_frame(stream) == ("snapshot", 7)
    assert _read_frame(stream) is None


def test_a_frame_cut_short_is_the_end():
    whole = frame_bytes(("status", "in-sync", ""))
    assert _read_frame(io.BytesIO(whole[:2])) is None  # in the length
    assert _read_frame(io.BytesIO(whole[:-1])) is None  # in the body


def test_a_stream_closed_under_the_reader_is_the_end():
    stream = io.BytesIO(frame_bytes(("snapshot", 1)))
    stream.close()
    assert _read_frame(stream) is None


def test_a_listing_taken_back_is_replaced_not_merged():
    """The child's first listing failed half-way ("relist"); the gRPC client's listing
    that follows is the whole state: a key only the failed one had is not in it."""
    from console.follower_process import FollowerProcess

    gone = ("/calico/resources/v3/projectcalico.org/profiles/gone", b"{}", 5, 5)
    kept = ("/calico/resources/v3/projectcalico.org/profiles/kept", b"{}", 6, 6)
    stream = io.BytesIO(
        frame_bytes(("page", [gone, kept], [None, None]))
        + frame_bytes(("relist",))
        + frame_bytes(("status", "disconnected", "etcd http://x: the connection was closed"))
        + frame_bytes(("page", [kept], [None]))
        + frame_bytes(("snapshot", 9))
    )
    pages = []
    updates = list(FollowerProcess(None, on_page=lambda kvs, f: pages.append(kvs))._read(stream))
    assert [type(u).__name__ for u in updates] == ["SyncStatus", "Snapshot"]
    assert list(updates[1].kvs) == [kept[0]] and updates[1].revision == 9
    assert [[kv.key for kv in p] for p in pages] == [[gone[0], kept[0]], [kept[0]]]


def test_what_the_child_writes_the_console_reads():
    """_Frames encodes in the sender's thread and writes from its own, in order, whole
    (a page far bigger than the pipe)."""
    from console.follower_process import _Frames

    read_end, write_end = os.pipe()
    frames = _Frames(write_end)
    from calico.etcd_gateway import KV

    big = [KV(f"/calico/k{i:05d}", b"v" * 900, i, i) for i in range(3000)]  # ~3 MB
    got = []
    reader = threading.Thread(
        target=lambda: got.extend(iter(lambda: _read_frame(stream), None)), daemon=True
    )
    stream = os.fdopen(read_end, "rb")
    reader.start()
    frames.send(("status", "connecting", ""))
    frames.page(big)
    frames.send(("snapshot", 3000))
    deadline = time.monotonic() + 10
    while len(got) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert [f[0] for f in got] == ["status", "page", "snapshot"]
    assert got[1][1] == [tuple(kv) for kv in big]
    assert got[1][2] == [None] * 3000  # not resources: no fields
