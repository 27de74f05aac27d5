"""FlowCollector: NFLOG denies + conntrack NEW allows -> enriched FlowRecords in a ring.

The sockets are opened by `start()` in the calling thread, so they belong to the network
namespace the caller is in (the agent runs in its node's namespace). One reader thread per
source; each datagram is parsed, enriched through the `lookup` callable the agent passes
(address -> endpoint info), and pushed into the ring in one batch. Readers subscribe with
their own cursor and filters; they never slow the collector down.
"""

from __future__ import annotations

import contextlib
import functools
import os
import select
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from agent.flows.conntrack import ConntrackEvent, ConntrackEventSocket, parse_conntrack_messages
from agent.flows.nflog import TCP_FLAG_NAMES, NflogPacket, NflogSocket, parse_nflog_messages
from agent.flows.prefix import NFLOG_GROUP, parse_prefix
from agent.flows.records import (
    ALLOWED,
    DEFAULT_CAPACITY,
    DENIED,
    Dropped,
    EndpointInfo,
    FlowRecord,
    FlowRing,
    iter_items,
)
from calico.flowfilter import FlowFilter, matches_any
from calico.protocols import flow_name

EndpointLookup = Callable[[str], "EndpointInfo | Mapping[str, Any] | None"]
AllowResolver = Callable[[FlowRecord], "Mapping[str, Any] | str | None"]

_CLOCK_SKEW = 60.0  # a kernel stamp further than this from our clock is not trusted


_FLAG_TABLE = [
    tuple(n for bit, n in enumerate(TCP_FLAG_NAMES) if bits & (1 << bit)) for bits in range(256)
]


def _flags(bits: int | None) -> tuple[str, ...]:
    return _FLAG_TABLE[bits & 0xFF] if bits else ()


@functools.lru_cache(maxsize=4096)
def _rule_of(prefix: str) -> dict[str, Any]:
    """Parsed once per distinct prefix (there are as many as deny rules); callers copy."""
    rule = parse_prefix(prefix)
    if rule.get("kind") != "unknown":
        del rule["raw"]
    return rule


class FlowSubscription:
    """An iterator of wire items (dicts) for one reader; `close()` ends it.

    Without `follow` it yields what the ring holds (the last `last` matching records, or all)
    and stops. With `follow` it then waits for new records; after `heartbeat` seconds of
    silence it yields ``{"type": "keepalive", "time": t}`` so a streaming server notices a
    client that went away. It ends when the collector stops or `close()` is called.
    """

    def __init__(
        self,
        ring: FlowRing,
        filters: FlowFilter | Iterable[FlowFilter] | None,
        follow: bool,
        last: int | None,
        heartbeat: float | None,
        batch: int = 512,
    ) -> None:
        self._ring = ring
        self._filters = None if filters is None else filters
        if self._filters is not None and not isinstance(self._filters, FlowFilter):
            self._filters = [f for f in self._filters if not f.is_empty()]
        elif isinstance(self._filters, FlowFilter) and self._filters.is_empty():
            self._filters = None
        self._follow = follow
        self._heartbeat = heartbeat
        self._batch = batch
        self._closed = False
        self._pending: list[dict[str, Any]] = []
        cursor, kept = ring.snapshot()
        backlog = [r for r in kept if matches_any(self._filters, r)]
        if last is not None:
            backlog = backlog[-last:] if last > 0 else []
        self._pending = list(iter_items(backlog))
        self._pending.reverse()  # pop() from the end
        self.cursor = cursor

    def close(self) -> None:
        self._closed = True

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return self

    def __next__(self) -> dict[str, Any]:
        while True:
            if self._closed:
                raise StopIteration
            if self._pending:
                return self._pending.pop()
            if not self._follow:
                self._closed = True
                raise StopIteration
            if self._ring.closed and self.cursor >= self._ring.total:
                self._closed = True
                raise StopIteration
            wait = 1.0 if self._heartbeat is None else min(1.0, self._heartbeat)
            silent_since = time.monotonic()
            while True:
                self.cursor, items = self._ring.read(self.cursor, self._batch, timeout=wait)
                if items or self._closed or self._ring.closed:
                    break
                if (
                    self._heartbeat is not None
                    and time.monotonic() - silent_since >= self._heartbeat
                ):
                    return {"type": "keepalive", "time": time.time()}
            out = [i for i in items if isinstance(i, Dropped) or matches_any(self._filters, i)]
            self._pending = list(iter_items(out))
            self._pending.reverse()


class FlowCollector:
    """Collects denied (NFLOG) and allowed (conntrack NEW) flows of the current namespace.

    `lookup(address)` answers the endpoint behind an address (an EndpointInfo or a mapping
    with name/network/profiles/pod) or None; allowed flows where neither side is known are
    skipped unless `keep_unknown`. `allow_resolver(record)` may name the rule that allowed a
    flow (a mapping like the parsed NFLOG prefix, or a string); denies carry the parsed
    NFLOG prefix. Neither callable may block for long: they run on the reader threads.
    """

    def __init__(
        self,
        lookup: EndpointLookup | None = None,
        allow_resolver: AllowResolver | None = None,
        *,
        capacity: int = DEFAULT_CAPACITY,
        nflog_group: int = NFLOG_GROUP,
        nflog: bool = True,
        conntrack: bool = True,
        keep_unknown: bool = False,
    ) -> None:
        self.lookup = lookup
        self.allow_resolver = allow_resolver
        self.ring = FlowRing(capacity)
        self.nflog_group = nflog_group
        self.want_nflog = nflog
        self.want_conntrack = conntrack
        self.keep_unknown = keep_unknown
        self.counters = {
            "denied": 0,
            "allowed": 0,
            "nflog_lost": 0,
            "skipped_unknown": 0,
            "lookup_errors": 0,
            "resolver_errors": 0,
        }
        self._nflog: NflogSocket | None = None
        self._ct: ConntrackEventSocket | None = None
        self._threads: list[threading.Thread] = []
        self._wake_r = self._wake_w = -1
        self._running = False
        self._ifnames: dict[int, str | None] = {}
        self._ifnames_at = 0.0
        self.errors: list[str] = []
        self._overruns = {"nflog": 0, "conntrack": 0}
        self._next_seq: int | None = None
        self._coerced: dict[str, tuple[Any, EndpointInfo | None]] = {}

    # ---------------------------------------------------------------- lifecycle

    def start(self) -> None:
        """Open the sockets here (in this thread's namespace) and start the readers."""
        if self._running:
            return
        try:
            if self.want_nflog:
                self._nflog = NflogSocket(self.nflog_group)
            if self.want_conntrack:
                self._ct = ConntrackEventSocket()
        except BaseException:
            self._close_sockets()
            raise
        self._wake_r, self._wake_w = os.pipe()
        self._running = True
        readers: list[tuple[str, Any, Callable[..., int]]] = []
        if self._nflog is not None:
            readers.append(("nflog", self._nflog, self._on_nflog))
        if self._ct is not None:
            readers.append(("conntrack", self._ct, self._on_conntrack))
        for name, sock, handler in readers:
            t = threading.Thread(
                target=self._loop, args=(sock, handler), name=f"flows-{name}", daemon=True
            )
            t.start()
            self._threads.append(t)

    def stop(self, timeout: float = 2.0) -> None:
        """Stop the readers, close the sockets, end every following subscription."""
        if not self._running:
            self.ring.close()
            return
        self._running = False
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"x")
        for t in self._threads:
            t.join(timeout)
        self._threads.clear()
        self._close_sockets()
        for fd in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)
        self._wake_r = self._wake_w = -1
        self.ring.close()

    def __enter__(self) -> FlowCollector:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _close_sockets(self) -> None:
        for key, s in (("nflog", self._nflog), ("conntrack", self._ct)):
            if s is not None:
                self._overruns[key] += s.lost_overruns
                s.close()
        self._nflog = self._ct = None

    def _loop(self, sock: NflogSocket | ConntrackEventSocket, handler: Callable[..., int]) -> None:
        poller = select.poll()
        poller.register(sock.fileno(), select.POLLIN)
        poller.register(self._wake_r, select.POLLIN)
        while self._running:
            try:
                ready = poller.poll(1000)
                if not self._running:
                    break
                if not any(fd == sock.fileno() for fd, _ in ready):
                    continue
                data = sock.recv_raw()
                if data:
                    handler(data, time.time())
            except Exception as exc:  # keep collecting; report through stats
                self.errors.append(f"{type(exc).__name__}: {exc}")
                del self.errors[:-20]
                time.sleep(0.05)

    # ---------------------------------------------------------------- enrichment

    def _endpoint(self, address: str) -> EndpointInfo | None:
        """The lookup's answer as an EndpointInfo. A mapping answer is converted once and
        reused while the lookup keeps returning that same object (replace, don't mutate)."""
        if self.lookup is None:
            return None
        try:
            found = self.lookup(address)
        except Exception:
            self.counters["lookup_errors"] += 1
            return None
        if found is None or isinstance(found, EndpointInfo):
            return found
        cached = self._coerced.get(address)
        if cached is not None and cached[0] is found:
            return cached[1]
        info = EndpointInfo.coerce(found)
        if len(self._coerced) > 65536:
            self._coerced.clear()
        self._coerced[address] = (found, info)
        return info

    def _ifname(self, index: int | None) -> str | None:
        if index is None:
            return None
        now = time.monotonic()
        if now - self._ifnames_at > 30.0:  # interfaces come and go with pods
            self._ifnames.clear()
            self._ifnames_at = now
        if index not in self._ifnames:
            try:
                self._ifnames[index] = socket.if_indextoname(index)
            except OSError:
                self._ifnames[index] = None
        return self._ifnames[index]

    def _on_nflog(self, data: bytes, received: float) -> int:
        return self.ingest_nflog(parse_nflog_messages(data), received)

    def _on_conntrack(self, data: bytes, received: float) -> int:
        return self.ingest_conntrack(parse_conntrack_messages(data, reply=False), received)

    def record_from_nflog(self, pkt: NflogPacket, received: float) -> FlowRecord | None:
        h = pkt.header
        if h is None:
            return None
        stamp = pkt.timestamp
        if stamp is None or abs(stamp - received) > _CLOCK_SKEW:
            stamp = received
        rule = dict(_rule_of(pkt.prefix))
        return FlowRecord(
            time=stamp,
            verdict=DENIED,
            protocol=flow_name(h.protocol),
            src=h.src,
            dst=h.dst,
            sport=h.sport,
            dport=h.dport,
            src_endpoint=self._endpoint(h.src),
            dst_endpoint=self._endpoint(h.dst),
            direction=rule.get("direction"),
            rule=rule,
            in_iface=self._ifname(pkt.indev),
            out_iface=self._ifname(pkt.outdev),
            tcp_flags=_flags(h.tcp_flags),
            icmp_type=h.icmp_type,
            icmp_code=h.icmp_code,
            source="nflog",
        )

    def record_from_conntrack(self, ev: ConntrackEvent, received: float) -> FlowRecord | None:
        if ev.kind != "new":
            return None
        t = ev.orig
        src_ep = self._endpoint(t.src)
        dst_ep = self._endpoint(t.dst)
        if src_ep is None and dst_ep is None and self.lookup is not None and not self.keep_unknown:
            self.counters["skipped_unknown"] += 1
            return None
        direction = None
        if dst_ep is not None and src_ep is None:
            direction = "ingress"
        elif src_ep is not None and dst_ep is None:
            direction = "egress"
        record = FlowRecord(
            time=ev.start if ev.start and abs(ev.start - received) < _CLOCK_SKEW else received,
            verdict=ALLOWED,
            protocol=flow_name(t.protocol),
            src=t.src,
            dst=t.dst,
            sport=t.sport,
            dport=t.dport,
            src_endpoint=src_ep,
            dst_endpoint=dst_ep,
            direction=direction,
            icmp_type=t.icmp_type,
            icmp_code=t.icmp_code,
            source="conntrack",
        )
        if self.allow_resolver is not None:
            try:
                rule = self.allow_resolver(record)
            except Exception:
                self.counters["resolver_errors"] += 1
                rule = None
            if isinstance(rule, str):
                record.rule = {"text": rule}
            elif rule is not None:
                record.rule = dict(rule)
        return record

    def _count_gaps(self, packets: list[NflogPacket]) -> None:
        for p in packets:
            if p.seq is None:
                continue
            if self._next_seq is not None and p.seq != self._next_seq:
                self.counters["nflog_lost"] += (p.seq - self._next_seq) & 0xFFFFFFFF
            self._next_seq = (p.seq + 1) & 0xFFFFFFFF

    def ingest_nflog(self, packets: Iterable[NflogPacket], received: float) -> int:
        """Turn parsed NFLOG packets into records and push them; returns how many.
        Gaps in the kernel's sequence numbers count as `nflog_lost` in stats()."""
        packets = list(packets)
        self._count_gaps(packets)
        records = [r for p in packets if (r := self.record_from_nflog(p, received))]
        self.ring.push_many(records)
        self.counters["denied"] += len(records)
        return len(records)

    def ingest_conntrack(self, events: Iterable[ConntrackEvent], received: float) -> int:
        """Turn parsed conntrack events into records and push them; returns how many."""
        records = [r for e in events if (r := self.record_from_conntrack(e, received))]
        self.ring.push_many(records)
        self.counters["allowed"] += len(records)
        return len(records)

    # ---------------------------------------------------------------- readers

    def subscribe(
        self,
        filters: FlowFilter | Iterable[FlowFilter] | None = None,
        follow: bool = False,
        last: int | None = None,
        heartbeat: float | None = 15.0,
    ) -> FlowSubscription:
        """An iterator of wire dicts (``{"type": "flow", ...}``, ``{"type": "dropped",
        "count": N}``, and in follow mode ``{"type": "keepalive", ...}``)."""
        return FlowSubscription(self.ring, filters, follow, last, heartbeat)

    def stats(self) -> dict[str, Any]:
        return {
            "running": self._running,
            "ring_capacity": self.ring.capacity,
            "ring_size": len(self.ring),
            "ring_total": self.ring.total,
            **self.counters,
            "kernel_overruns": {
                "nflog": self._overruns["nflog"]
                + (self._nflog.lost_overruns if self._nflog else 0),
                "conntrack": self._overruns["conntrack"]
                + (self._ct.lost_overruns if self._ct else 0),
            },
            "errors": list(self.errors),
        }
