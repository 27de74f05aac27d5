"""etcd v3 as the Calico datastore: the key layout, CAS writes, and a gap-free watch.

Keys follow Calico's own etcd v3 layout so `etcdctl` and an operator's habits carry over:

    /calico/resources/v3/projectcalico.org/<plural>/<name>
    /calico/resources/v3/projectcalico.org/<plural>/<namespace>/<name>   (namespaced kinds)

A resource's `metadata.resourceVersion` is the key's etcd mod_revision; an update that
carries one is a compare-and-swap on it, so two writers racing on one key cannot both win.

The client is `pyetcd` (PyPI etcd-sdk-python): python-etcd3's API, but it imports with
current protobuf (README, "Choices"). Its stock endpoint handling marks a node failed for
300 s after one error, which would turn an etcd restart into five minutes of outage, so
endpoints are built here with a short retry interval.

A cluster (several endpoints): a call that fails because its member is gone, or has no
leader for a moment, is tried again on the next member within `FAILOVER_WINDOW`, so a
killed leader costs a caller about one election. Reads and watches are always safe to
try again; a write only when it cannot have reached etcd (no connection), because a write
that was sent and then lost its answer may have been applied. TLS (https endpoints):
`grpc.ssl_channel_credentials` from the CA and, when given, the client key and cert; a
certificate problem is one line naming the endpoint, the cause and the file, never
gRPC's own words or log lines.
"""

from __future__ import annotations

import json
import os
import queue
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from calico.config import EtcdEndpoint, EtcdSettings, resolve_settings
from calico.errors import AlreadyExists, Conflict, DatastoreError, NotFound, Unavailable
from calico.etcd_gateway import NOT_THIS_ADDRESS, VERIFY_REASONS, client_cert_problem, next_limit
from calico.keys import key_of, kind_prefix, resource_key
from calico.resources import Resource, kind_class

LIST_PAGE = 500  # keys per range read of a listing
MAX_MESSAGE = 1 << 30  # etcd's own request limit is far lower; replies are what grow
GRPC_OPTIONS = [
    ("grpc.max_receive_message_length", MAX_MESSAGE),
    ("grpc.max_send_message_length", 64 << 20),
    # gRPC backs off reconnecting up to 120 s by default: after a 10 s etcd outage a warm
    # process (the agent serving CNI requests) kept failing for many seconds once etcd was
    # back. Retry a lost connection at least every second. (Not min_reconnect_backoff_ms:
    # gRPC also uses it as the connect timeout, and 50 plugins starting at once on 2 cores
    # then failed to connect to a healthy etcd.)
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 1000),
]
FAILOVER_WINDOW = 2.5  # seconds a call keeps trying other members of a cluster
# Seconds one attempt may take in a cluster. A write sent to a follower just as the leader
# died is forwarded to the dead leader and lost; it would wait out the whole timeout (5 s)
# although a new leader answers within a second. An attempt gives up sooner: a read goes
# to the next member, a write reports that its outcome is unknown.
CLUSTER_ATTEMPT_TIMEOUT = 1.5
FAILED_MEMBER_SKIP = 0.2  # seconds a member that just failed is passed over

# gRPC's C core logs a failed TLS handshake on stderr ("E1202 ... Corruption detected"),
# beside the one line we report; silence it unless the user asked for its logs.
os.environ.setdefault("GRPC_VERBOSITY", "NONE")


# ---------------------------------------------------------------- plain KV


@dataclass(frozen=True)
class KV:
    key: str
    value: bytes
    mod_revision: int
    create_revision: int

    def json(self) -> Any:
        return json.loads(self.value)


def _kv(raw: Any) -> KV:
    return KV(raw.key.decode(), bytes(raw.value), raw.mod_revision, raw.create_revision)


def _unavailable(exc: Exception) -> Unavailable:
    return Unavailable(f"etcd unavailable: {exc or type(exc).__name__}")


# ---------------------------------------------------------------- failures, in words


@dataclass(frozen=True)
class Failure:
    """One failed RPC, judged: `line` is what the user reads."""

    line: str
    tls: bool = False  # a certificate problem: trying again or elsewhere cannot help
    unsent: bool = False  # no connection was made: a write may go to another member
    timeout: bool = False  # sent, no answer: a write's outcome is unknown


def _rpc_error(exc: BaseException) -> Any:
    """The grpc.RpcError behind a pyetcd exception (pyetcd raises its own, bare, inside
    the `except grpc.RpcError`), or None."""
    import grpc

    seen = exc
    for _ in range(4):
        if isinstance(seen, grpc.RpcError):
            return seen
        seen = seen.__cause__ or seen.__context__
        if seen is None:
            return None
    return None


def describe_failure(exc: BaseException, url: str, settings: EtcdSettings | None) -> Failure:
    """gRPC's status of a failed call -> one line: `etcd URL: what happened (the file)`."""
    rpc = _rpc_error(exc)
    details = ""
    code = ""
    if rpc is not None:
        try:
            details, code = rpc.details() or "", rpc.code().name
        except Exception:  # not a finished call: no status to read
            details = str(rpc)
    else:
        details = str(exc) or type(exc).__name__
    if code == "DEADLINE_EXCEEDED":
        return Failure(f"etcd {url}: no answer within the timeout", timeout=True)
    low = details.lower()
    secure = url.startswith("https")

    def named(attr: str) -> str:
        return settings.source_of(attr) if settings else attr

    if "handshake failed" in low or "certificate_verify_failed" in low:
        found = re.search(r"CERTIFICATE_VERIFY_FAILED: ([^:]+)", details)
        reason = found.group(1).strip() if found else ""
        if "peer name" in low or "hostname" in low or "subject alternative" in low:
            reason = NOT_THIS_ADDRESS
        reason = VERIFY_REASONS.get(reason, reason or "certificate verify failed")
        return Failure(
            f"etcd {url}: TLS handshake failed: {reason} ({named('ca_cert_file')})", tls=True
        )
    if secure and ("unwrap failed" in low or "tsi_data_corrupted" in low or "alert" in low):
        # The server refused the handshake after it started: the client certificate.
        why = client_cert_problem(settings)
        return Failure(f"etcd {url}: TLS handshake failed: {why}", tls=True)
    if "connection refused" in low or "failed to connect" in low and "socket closed" not in low:
        cause = "connection refused" if "connection refused" in low else "cannot connect"
        if "no route" in low:
            cause = "no route to host"
        return Failure(f"etcd {url}: {cause}", unsent=True)
    if not secure and "socket closed" in low:
        return Failure(
            f"etcd {url}: the connection was closed"
            " (the member stopped, or it serves only TLS: use https:// and ETCD_CA_CERT_FILE)"
        )
    etcd_said = re.search(r"etcdserver: ([^\n]+)", details)
    if etcd_said:
        return Failure(f"etcd {url}: {etcd_said.group(1).strip()}")
    text = details.split("; last error: ")[-1] if details else (code or "unavailable")
    text = re.sub(r"^(UNKNOWN|UNAVAILABLE): (ipv[46]:\S+: )?", "", text)
    return Failure(f"etcd {url}: {text}")


_CLIENT_CLASS: Any = None
_attempt = threading.local()


def _client_class() -> Any:
    """pyetcd's client with a per-thread timeout override (its RPCs all read
    `self.timeout`), so one attempt in a cluster can be shorter than the caller's timeout."""
    global _CLIENT_CLASS
    if _CLIENT_CLASS is None:
        import pyetcd

        class Client(pyetcd.MultiEndpointEtcd3Client):
            @property
            def timeout(self) -> float | None:
                return getattr(_attempt, "timeout", None) or self._timeout

            @timeout.setter
            def timeout(self, value: float | None) -> None:
                self._timeout = value

        _CLIENT_CLASS = Client
    return _CLIENT_CLASS


class _attempt_timeout:
    def __init__(self, client: Any, seconds: float):
        base = getattr(client, "_timeout", None)
        self.seconds = min(seconds, base) if base else seconds

    def __enter__(self) -> None:
        self.saved = getattr(_attempt, "timeout", None)
        _attempt.timeout = self.seconds

    def __exit__(self, *exc: Any) -> None:
        _attempt.timeout = self.saved


def _settings_for(endpoints: str | EtcdSettings | Sequence[Any] | None) -> EtcdSettings:
    if isinstance(endpoints, EtcdSettings):
        return endpoints.check()
    if endpoints is not None and not isinstance(endpoints, str):
        urls = [ep.url() if isinstance(ep, EtcdEndpoint) else str(ep) for ep in endpoints]
        endpoints = ",".join(urls)
    return resolve_settings(endpoints)


class Datastore:
    """One connection to etcd; thread-safe for concurrent calls (gRPC channels are)."""

    def __init__(self, client: Any, endpoints: str, settings: EtcdSettings | None = None):
        self.client = client
        self.endpoints = endpoints
        self.settings = settings
        self._urls = {}
        if settings is not None:
            self._urls = {f"{ep.host}:{ep.port}": ep.url() for ep in settings.parsed()}

    @classmethod
    def connect(
        cls, endpoints: str | EtcdSettings | Sequence[Any] | None = None, timeout: float = 5.0
    ) -> Datastore:
        """`endpoints`: settings, a comma-separated string or a list of endpoints (TLS
        files then come from the environment or calicoctl.cfg), or None (all of it does).
        Raises ConfigError (one line) for settings that cannot work."""
        settings = _settings_for(endpoints)
        # The etcd client and grpc take ~250 ms to import: only a program that connects pays
        # it (calicoctl --help, a CNI VERSION, the console's first paint do not).
        from pyetcd.client import Endpoint

        creds = None
        if settings.secure:
            import grpc

            ca, key, cert = settings.tls_files()
            creds = grpc.ssl_channel_credentials(ca, key, cert)
        eps = [
            # time_retry: how long a failed endpoint is skipped; pyetcd's default is 300 s.
            # gRPC's default 4 MiB receive limit breaks a snapshot of ~5,000 endpoints.
            Endpoint(
                ep.host,
                ep.port,
                secure=creds is not None,
                creds=creds,
                time_retry=FAILED_MEMBER_SKIP,
                opts=GRPC_OPTIONS,
            )
            for ep in settings.parsed()
        ]
        client = _client_class()(endpoints=eps, timeout=timeout, failover=True)
        return cls(client, settings.endpoints, settings)

    def close(self) -> None:
        self.client.close()

    def _current_url(self) -> str:
        label = getattr(self.client, "_current_endpoint_label", None) or ""
        return self._urls.get(label) or (f"https://{label}" if self._secure else f"http://{label}")

    @property
    def _secure(self) -> bool:
        return bool(self.settings and self.settings.secure)

    def _fail_current(self) -> None:
        """Pass over the member in use for a moment (a watch's failure, which pyetcd does
        not count), so the next call goes to another one."""
        ep = getattr(self.client, "endpoint_in_use", None)
        if ep is not None and len(getattr(self.client, "endpoints", ())) > 1 and not ep.is_failed():
            ep.fail()
            self.client._clear_old_stubs()

    def _call(self, fn: Callable[..., Any], *args: Any, _write: bool = False, **kwargs: Any) -> Any:
        """Run one etcd RPC, turning every transport failure into Unavailable (one line).

        With several members, a failed call is tried on the next one while FAILOVER_WINDOW
        lasts: reads always, writes (`_write`) only when they never left this process."""
        import grpc
        from pyetcd import exceptions as etcd_exc

        transport = (
            etcd_exc.ConnectionFailedError,
            etcd_exc.ConnectionTimeoutError,
            etcd_exc.InternalServerError,
            grpc.RpcError,
        )
        cluster = len(getattr(self.client, "endpoints", ())) > 1
        deadline = time.monotonic() + FAILOVER_WINDOW
        last: Failure | None = None  # the last member's own failure, the one worth reporting
        while True:
            try:
                if cluster:
                    with _attempt_timeout(self.client, CLUSTER_ATTEMPT_TIMEOUT):
                        return fn(*args, **kwargs)
                return fn(*args, **kwargs)
            except etcd_exc.NoServerAvailableError:
                # Every member failed in the last FAILED_MEMBER_SKIP: wait for one to be due.
                failure = last or Failure(
                    f"etcd unavailable: no member of {self.endpoints} answers", unsent=True
                )
            except transport as exc:
                failure = last = describe_failure(exc, self._current_url(), self.settings)
            except ValueError as exc:  # pyetcd: "Trying to use a failed node"
                if "failed node" not in str(exc):
                    raise
                failure = Failure(f"etcd unavailable: {self.endpoints}", unsent=True)
            if not failure.tls:
                self._fail_current()  # pyetcd counts failures of its unary calls only
            retry = cluster and not failure.tls and (failure.unsent or not _write)
            if not retry or time.monotonic() >= deadline:
                line = failure.line
                if _write and failure.timeout:
                    line += " (the write may or may not have been applied)"
                raise Unavailable(line) from None
            time.sleep(0.02)

    # -- raw keys
    def kv_get(self, key: str) -> KV | None:
        resp = self._call(self.client.get_response, key)
        return _kv(resp.kvs[0]) if resp.count else None

    def kv_list(
        self,
        prefix: str,
        page: int = LIST_PAGE,
        on_page: Callable[[list[KV]], None] | None = None,
    ) -> tuple[list[KV], int]:
        """Every key under a prefix, and the store revision it was read at.

        Read in pages at one revision, so the listing is consistent, like kubectl's chunked
        lists: one range of 10,000 endpoints is ~9 MB, and decoding it in a single protobuf
        call holds the GIL long enough to stall any UI thread in the same process.
        `on_page` sees each page as it arrives (a reader that decodes page N while etcd
        serves page N+1); the listing is only consistent once the call returns."""
        start = prefix.encode()
        end = bytearray(start)
        end[-1] += 1  # the prefix's range end (no prefix here ends in 0xff)
        out: list[KV] = []
        revision = None
        limit = page
        while True:
            resp = self._call(
                self.client.get_range_response, start, bytes(end), limit=limit, revision=revision
            )
            revision = revision or resp.header.revision
            kvs = [_kv(raw) for raw in resp.kvs]
            out.extend(kvs)
            if on_page is not None and kvs:
                on_page(kvs)
            if not resp.more or not resp.kvs:
                return out, revision
            start = resp.kvs[-1].key + b"\0"
            if on_page is not None:
                limit = next_limit(page, resp.count - len(resp.kvs))

    def kv_count(self, prefix: str) -> int:
        resp = self._call(self.client.get_prefix_response, prefix, count_only=True)
        return resp.count

    def kv_put(self, key: str, value: bytes | str) -> int:
        resp = self._call(self.client.put, key, value, _write=True)
        return resp.header.revision

    def kv_create(self, key: str, value: bytes | str) -> bool:
        """Create if absent: True if we created it, False if it existed."""
        return self.kv_cas(key, value, 0)

    def kv_cas(self, key: str, value: bytes | str, mod_revision: int) -> bool:
        """Write only if the key's mod_revision is still `mod_revision` (0: absent)."""
        t = self.client.transactions
        compare = [t.create(key) == 0] if mod_revision == 0 else [t.mod(key) == mod_revision]
        ok, _ = self._call(self.client.transaction, compare, [t.put(key, value)], [], _write=True)
        return ok

    def kv_delete(self, key: str, mod_revision: int | None = None) -> bool:
        """Delete (only if unchanged since `mod_revision`); False if absent or changed."""
        t = self.client.transactions
        if mod_revision is None:
            compare = [t.create(key) != 0]
        else:
            compare = [t.mod(key) == mod_revision]
        ok, _ = self._call(self.client.transaction, compare, [t.delete(key)], [], _write=True)
        return ok

    def kv_delete_prefix(self, prefix: str) -> int:
        resp = self._call(self.client.delete_prefix, prefix, _write=True)
        return resp.deleted

    def kv_txn(self, compare: list[Any], success: list[Any], failure: list[Any] | None = None):
        """A raw transaction (ops from `self.client.transactions`); returns (ok, responses)."""
        return self._call(self.client.transaction, compare, success, failure or [], _write=True)

    @property
    def ops(self) -> Any:
        """Builders for kv_txn: `.create(key) == 0`, `.mod(key) == rev`, `.put(k, v)`, ..."""
        return self.client.transactions

    def revision(self) -> int:
        resp = self._call(self.client.get_response, "\0")
        return resp.header.revision

    def healthy(self) -> bool:
        try:
            self.revision()
        except DatastoreError:
            return False
        return True

    # -- resources
    def _decode(self, kv: KV) -> Resource:
        res = Resource.from_dict(kv.json())
        res.metadata.resource_version = str(kv.mod_revision)
        return res

    def get(self, kind: str | type[Resource], name: str, namespace: str | None = None) -> Resource:
        cls = kind_class(kind) if isinstance(kind, str) else kind
        kv = self.kv_get(resource_key(cls, name, namespace))
        if kv is None:
            ns = f" in namespace {namespace or 'default'}" if cls.NAMESPACED else ""
            raise NotFound(f"{cls.KIND} {name!r}{ns} not found")
        return self._decode(kv)

    def list(self, kind: str | type[Resource], namespace: str | None = None) -> list[Resource]:
        cls = kind_class(kind) if isinstance(kind, str) else kind
        kvs, _ = self.kv_list(kind_prefix(cls, namespace))
        return [self._decode(kv) for kv in kvs]

    @staticmethod
    def _encode(res: Resource) -> str:
        data = res.to_dict()
        data["metadata"].pop("resourceVersion", None)  # it is the key's revision, not data
        return json.dumps(data, separators=(",", ":"), sort_keys=True)

    def create(self, res: Resource) -> Resource:
        res.validate()
        if not res.metadata.uid:
            res.metadata.uid = str(uuid.uuid4())
        if not res.metadata.creation_timestamp:
            res.metadata.creation_timestamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        key = key_of(res)
        if not self.kv_create(key, self._encode(res)):
            raise AlreadyExists(f"{res.ident} already exists")
        return self.get(type(res), res.metadata.name, res.metadata.namespace)

    def update(self, res: Resource) -> Resource:
        """Replace; with metadata.resourceVersion set, only if nobody changed it since."""
        res.validate()
        key = key_of(res)
        current = self.kv_get(key)
        if current is None:
            raise NotFound(f"{res.ident} not found")
        expected = int(res.metadata.resource_version or current.mod_revision)
        old = current.json().get("metadata", {})
        # uid and creation time belong to the object's history, not to the edit.
        res.metadata.uid = res.metadata.uid or old.get("uid")
        res.metadata.creation_timestamp = res.metadata.creation_timestamp or old.get(
            "creationTimestamp"
        )
        if not self.kv_cas(key, self._encode(res), expected):
            raise Conflict(
                f"{res.ident} was changed by someone else (resourceVersion {expected} is stale)"
            )
        return self.get(type(res), res.metadata.name, res.metadata.namespace)

    def apply(self, res: Resource) -> Resource:
        """Create or replace, whichever applies (retries a lost race once)."""
        uid, created = res.metadata.uid, res.metadata.creation_timestamp
        for _ in range(3):
            try:
                return self.create(res)
            except AlreadyExists:
                # create() stamped a fresh uid/time on the object; the stored ones stay.
                res.metadata.uid, res.metadata.creation_timestamp = uid, created
            try:
                res.metadata.resource_version = None
                return self.update(res)
            except (NotFound, Conflict):
                continue
        raise Conflict(f"{res.ident} kept changing while being applied")

    def delete(
        self,
        kind: str | type[Resource],
        name: str,
        namespace: str | None = None,
        resource_version: str | None = None,
    ) -> Resource:
        cls = kind_class(kind) if isinstance(kind, str) else kind
        existing = self.get(cls, name, namespace)
        rev = int(resource_version or existing.metadata.resource_version or 0)
        if not self.kv_delete(resource_key(cls, name, namespace), rev):
            raise Conflict(f"{existing.ident} changed while being deleted")
        return existing


# ---------------------------------------------------------------- gap-free watch


@dataclass
class Snapshot:
    """The complete state under the prefix at `revision` (first update of a sync)."""

    kvs: dict[str, KV]
    revision: int


@dataclass
class Change:
    """One key changed (kv None: deleted) at `revision`."""

    key: str
    kv: KV | None
    revision: int


@dataclass
class SyncStatus:
    """'in-sync', 'resyncing' (after a compaction) or 'disconnected' (with the error)."""

    state: str
    error: str = ""


SyncUpdate = Snapshot | Change | SyncStatus


@dataclass
class PrefixSyncer:
    """A consistent snapshot of a prefix, then every change after it, with no gap.

    After a disconnect the watch resumes from the last revision seen. If etcd compacted
    that revision away, the prefix is listed again and only the difference to what was
    already delivered is emitted, so a consumer never misses nor sees twice a state.
    """

    datastore: Datastore
    prefix: str
    retry_interval: float = 0.2
    known: dict[str, KV] = field(default_factory=dict)
    revision: int = 0
    # Each page of a listing that ends in a Snapshot, as it arrives (Datastore.kv_list): for
    # a consumer that prepares pages while the rest is read. Not for a re-list after a
    # compaction, which yields Changes: its prepared pages would wait for a Snapshot that
    # never comes.
    on_page: Callable[[list[KV]], None] | None = None
    page: int = LIST_PAGE  # keys per range read of a listing (Datastore.kv_list)
    # `known` and `revision` already hold a listing its consumer has (read without this
    # syncer, console/follower_process.py): the first update is the watch after it.
    listed: bool = False

    def updates(self, stop: threading.Event) -> Iterator[SyncUpdate]:
        import grpc
        from pyetcd import exceptions as etcd_exc

        first = not self.listed
        connected = False
        while not stop.is_set():
            try:
                if first or self.revision == 0:
                    kvs, rev = self.datastore.kv_list(
                        self.prefix, page=self.page, on_page=self.on_page
                    )
                    self.known = {kv.key: kv for kv in kvs}
                    self.revision = rev
                    first = False
                    yield Snapshot(dict(self.known), rev)
                for update in self._watch(stop):
                    connected = True
                    yield update
            except etcd_exc.RevisionCompactedError:
                yield SyncStatus("resyncing", f"revision {self.revision + 1} compacted")
                yield from self._relist_diff()
                continue
            except (DatastoreError, etcd_exc.Etcd3Exception, grpc.RpcError, _WatchBroken) as exc:
                if connected:
                    connected = False
                    yield SyncStatus("disconnected", _short_error(exc))
                stop.wait(self.retry_interval)

    def _relist_diff(self) -> Iterator[SyncUpdate]:
        kvs, rev = self.datastore.kv_list(self.prefix, page=self.page)  # ends in Changes: no pages
        fresh = {kv.key: kv for kv in kvs}
        for key in sorted(set(self.known) - set(fresh)):
            yield Change(key, None, rev)
        for key, kv in sorted(fresh.items()):
            old = self.known.get(key)
            if old is None or old.mod_revision != kv.mod_revision:
                yield Change(key, kv, rev)
        self.known = fresh
        self.revision = rev

    def _watch(self, stop: threading.Event) -> Iterator[SyncUpdate]:
        events: queue.Queue[Any] = queue.Queue()
        client = self.datastore.client
        watch_id = self.datastore._call(
            client.add_watch_prefix_callback,
            self.prefix,
            events.put,
            start_revision=self.revision + 1,
            progress_notify=True,
        )
        member = getattr(client, "endpoint_in_use", None)
        try:
            yield SyncStatus("in-sync")
            while not stop.is_set():
                try:
                    resp = events.get(timeout=0.25)
                except queue.Empty:
                    continue
                if isinstance(resp, Exception):
                    # The member went away (or lost the cluster): resume on another one.
                    fail = getattr(self.datastore, "_fail_current", None)
                    if fail and member is not None and client.endpoint_in_use is member:
                        fail()
                    raise resp
                if resp is None:
                    raise _WatchBroken("watch stream closed")
                for ev in resp.events:
                    key = ev.key.decode()
                    if type(ev).__name__ == "DeleteEvent":
                        self.known.pop(key, None)
                        yield Change(key, None, ev.mod_revision)
                    else:
                        kv = KV(key, bytes(ev.value), ev.mod_revision, ev.create_revision)
                        self.known[key] = kv
                        yield Change(key, kv, ev.mod_revision)
                self.revision = max(self.revision, resp.header.revision)
        finally:
            try:
                client.cancel_watch(watch_id)
            except Exception:  # the stream may already be gone; nothing to cancel
                pass


class _WatchBroken(Exception):
    pass


def _short_error(exc: Exception) -> str:
    code = getattr(exc, "code", None)
    if callable(code):  # a gRPC error: its status says enough
        try:
            return f"etcd stream lost: {code().name}"
        except Exception:  # not a finished RPC; fall through to str()
            pass
    return str(exc) or type(exc).__name__


def wait_for(predicate: Callable[[], bool], timeout: float, interval: float = 0.02) -> bool:
    """Poll a condition until true or timeout (for tests and CLIs, never the agent loop)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()
