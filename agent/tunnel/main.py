"""calico-tunl: make sure this network namespace has `tunl0`, Calico's IPIP device.

    calico-tunl [--mode auto|kernel|tun] [--status-file PATH] [--status-interval S]

`kernel`: the kernel's own ipip device, either the fallback `tunl0` the ipip module makes
in every namespace or one made here (`ip link add tunl0 type ipip`, remote and local any);
the process then only waits for SIGTERM, so a supervisor sees it running, and leaves the
device behind when it goes (routes through it stay, as the dataplane does when the agent
stops). `tun`: a TUN device named tunl0 (IFF_TUN | IFF_NO_PI, not persistent: it lives as
long as this process, and goes, with the routes through it, when it exits) and the relay
of `agent.tunnel.relay` between it and a raw IPPROTO_IPIP socket. On the wire both are the
same RFC 2003 packets, so a kernel-ipip host and a calico-tunl host carry each other's
traffic. `auto` (the default) takes the kernel's device when the kernel can make one.

The address (the node's tunnel address, /32), MTU 1480 and link state are the agent's job,
as Felix's; the relay sets MTU 1480 once when it creates the TUN device.

Counters (read, sent, received, written; drops by reason) go to `--status-file` as JSON
every `--status-interval` seconds and at exit, and to the log at exit. Exits 0 on
SIGTERM/SIGINT; 1 with one line on stderr when neither path can make tunl0.

Why Python and not a small C relay: measured on the development VM (2 cores, iperf3 TCP
between two namespaces' tunl0 addresses), this relay carried 0.68 Gbit/s; a minimal C
relay (poll, read, sendto to a fixed address, no route lookup, no counters) carried
0.53-0.72 Gbit/s in the same runs. The bound is the per-packet syscalls and a TUN device
without offloads (1,480-byte packets, no GSO), not the interpreter, so C would buy
nothing. Natively routed, the same pods do ~10.9 Gbit/s (bench/bench_ipip.py): a kernel
with ipip needs no relay.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import fcntl
import ipaddress
import json
import logging
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

from agent.tunnel.packet import IPIP_OVERHEAD, IPPROTO_IPIP
from agent.tunnel.relay import (
    SEND_ERROR,
    WRITE_ERROR,
    Relay,
    RouteCache,
    route_answer,
    status_record,
    write_status,
)
from kernel.netlink import NETLINK_ROUTE, NLMSGHDR
from kernel.rtnetlink import Netlink

log = logging.getLogger("calico-tunl")

DEVICE = "tunl0"
TUN_MTU = 1500 - IPIP_OVERHEAD
TUNSETIFF = 0x400454CA  # _IOW('T', 202, int)
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
RTNLGRP_IPV4_ROUTE = 7
BATCH = 64  # packets moved per descriptor per turn before looking at the others
SOCKET_BUFFER = 4 << 20


class TunnelError(Exception):
    """tunl0 cannot be made here; the message says why, in one line."""


# ---------------------------------------------------------------- the device


def link_kind(name: str) -> str | None:
    """The kind of link `name` ('ipip', 'tun', '' for a plain one), None if absent."""
    proc = subprocess.run(
        ["ip", "-d", "-j", "link", "show", "dev", name], capture_output=True, text=True, timeout=10
    )
    if proc.returncode != 0:
        return None
    try:
        info = json.loads(proc.stdout)[0].get("linkinfo") or {}
    except (ValueError, IndexError):
        return ""
    return str(info.get("info_kind") or "")


def kernel_device() -> tuple[bool, str]:
    """(True, how) if the kernel's ipip tunl0 is here now, else (False, why not)."""
    kind = link_kind(DEVICE)
    if kind == "ipip":
        return True, "the kernel's fallback tunl0"
    if kind is not None:
        raise TunnelError(f"{DEVICE} exists but is a {kind or 'plain'} device, not ipip")
    proc = subprocess.run(
        ["ip", "link", "add", DEVICE, "type", "ipip"], capture_output=True, text=True, timeout=10
    )
    if proc.returncode == 0:
        return True, "ip link add tunl0 type ipip"
    why = (proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"])[-1]
    return False, f"ip link add {DEVICE} type ipip: {why}"


def open_tun(name: str = DEVICE) -> int:
    """A TUN device `name` (no packet info header, not persistent); returns its fd."""
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_CLOEXEC)
    try:
        ifr = struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI)
        fcntl.ioctl(fd, TUNSETIFF, ifr)
    except OSError:
        os.close(fd)
        raise
    os.set_blocking(fd, False)
    return fd


def tun_device() -> int:
    """The TUN tunl0, MTU set, IPv6 off (no router solicitations into the relay)."""
    if link_kind(DEVICE) is not None:
        raise TunnelError(f"{DEVICE} exists already (another calico-tunl?)")
    fd = open_tun(DEVICE)
    subprocess.run(
        ["ip", "link", "set", DEVICE, "mtu", str(TUN_MTU)], capture_output=True, timeout=10
    )
    with contextlib.suppress(OSError):
        Path(f"/proc/sys/net/ipv6/conf/{DEVICE}/disable_ipv6").write_text("1")
    return fd


def raw_ipip_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_RAW | socket.SOCK_CLOEXEC, IPPROTO_IPIP)
    for opt in (socket.SO_RCVBUF, socket.SO_SNDBUF):
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, opt, SOCKET_BUFFER)
    sock.setblocking(False)
    return sock


def route_monitor() -> socket.socket:
    """A netlink socket that receives every IPv4 route change (its content is not read:
    any message means the route cache may be wrong)."""
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, NETLINK_ROUTE)
    sock.bind((0, 1 << (RTNLGRP_IPV4_ROUTE - 1)))
    sock.setblocking(False)
    return sock


def kernel_lookup(nl: Netlink, tunnel_index: int):
    """RTM_GETROUTE for one inner destination -> (outer destination, None) or (None, why)."""

    def lookup(dst: bytes) -> tuple[str | None, str | None]:
        try:
            route = nl.route_get(ipaddress.IPv4Address(dst))
        except OSError:
            route = None
        if route is None:
            return route_answer(None, None, tunnel_index)
        gw = str(route.gateway) if route.gateway is not None else None
        return route_answer(route.oif, gw, tunnel_index)

    return lookup


# ---------------------------------------------------------------- the loop


class Loop:
    def __init__(self, tun_fd: int, raw: socket.socket, monitor: socket.socket, relay: Relay):
        self.tun_fd, self.raw, self.monitor, self.relay = tun_fd, raw, monitor, relay
        self.stopping = False

    def from_tun(self) -> None:
        relay, read, sendto, fd = self.relay, os.read, self.raw.sendto, self.tun_fd
        for _ in range(BATCH):
            try:
                pkt = read(fd, 65535)
            except BlockingIOError:
                return
            addr = relay.outbound(pkt)
            if addr is None:
                continue
            try:
                sendto(pkt, addr)
            except BlockingIOError:
                relay.counters.drop(SEND_ERROR + ":EAGAIN")
                continue
            except OSError as exc:
                relay.counters.drop(f"{SEND_ERROR}:{errno.errorcode.get(exc.errno, exc.errno)}")
                continue
            relay.sent(pkt)

    def from_wire(self) -> None:
        relay, recv, write, fd = self.relay, self.raw.recv, os.write, self.tun_fd
        for _ in range(BATCH):
            try:
                pkt = recv(65535)
            except BlockingIOError:
                return
            inner = relay.inbound(pkt)
            if inner is None:
                continue
            try:
                write(fd, inner)
            except OSError as exc:
                relay.counters.drop(f"{WRITE_ERROR}:{errno.errorcode.get(exc.errno, exc.errno)}")
                continue
            relay.written(inner)

    def route_changed(self) -> None:
        while True:
            try:
                data = self.monitor.recv(65536)
            except BlockingIOError:
                break
            except OSError as exc:  # ENOBUFS: changes were lost, which also means flush
                if exc.errno != errno.ENOBUFS:
                    raise
                continue
            if len(data) < NLMSGHDR.size:
                break
        self.relay.routes.flush()

    def run(self, wake_fd: int, tick: float, on_tick) -> None:
        poller = select.poll()
        tun, raw, mon = self.tun_fd, self.raw.fileno(), self.monitor.fileno()
        for fd in (tun, raw, mon, wake_fd):
            poller.register(fd, select.POLLIN)
        next_tick = time.monotonic() + tick
        while not self.stopping:
            timeout = max(0.0, next_tick - time.monotonic())
            try:
                events = poller.poll(timeout * 1000)
            except InterruptedError:
                events = []
            ready = {fd for fd, _ in events}
            if mon in ready:  # before the packets: never send on a stale route
                self.route_changed()
            if tun in ready:
                self.from_tun()
            if raw in ready:
                self.from_wire()
            if wake_fd in ready:
                with contextlib.suppress(BlockingIOError):
                    while os.read(wake_fd, 256):
                        pass
            if time.monotonic() >= next_tick:
                next_tick = time.monotonic() + tick
                on_tick()


# ---------------------------------------------------------------- entry point


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="calico-tunl",
        description="Make sure this network namespace has tunl0 (Calico's IPIP device): the "
        "kernel's ipip device if it has one, else a TUN device and a relay in this process.",
    )
    p.add_argument("--mode", choices=("auto", "kernel", "tun"), default="auto",
                   help="auto (default): the kernel's device when it can make one")  # fmt: skip
    p.add_argument("--status-file", metavar="PATH", help="keep the counters here (JSON)")
    p.add_argument("--status-interval", type=float, default=1.0, metavar="S")
    p.add_argument("--log-level", default=os.environ.get("CALICO_TUNL_LOG", "INFO"))
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, str(args.log_level).upper(), logging.INFO),
        stream=sys.stderr,
        format="%(asctime)s calico-tunl[%(process)d] %(levelname)s %(message)s",
    )
    status_file = Path(args.status_file) if args.status_file else None
    started = time.time()
    wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    stop = {"asked": False}

    def on_stop(*_: object) -> None:
        stop["asked"] = True
        if loop is not None:
            loop.stopping = True

    loop: Loop | None = None
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGTERM, on_stop)
    signal.signal(signal.SIGINT, on_stop)
    try:
        kernel_why = "not tried (--mode tun)"
        if args.mode in ("auto", "kernel"):
            ok, kernel_why = kernel_device()
            if ok:
                return _kernel_mode(kernel_why, status_file, started, wake_r, stop)
            if args.mode == "kernel":
                raise TunnelError(f"no kernel ipip device: {kernel_why}")
        try:
            tun_fd = tun_device()
        except OSError as exc:
            raise TunnelError(
                f"cannot make {DEVICE}: no kernel ipip ({kernel_why}) and no TUN device "
                f"(/dev/net/tun: {exc.strerror or exc})"
            ) from None
        try:
            raw = raw_ipip_socket()
        except OSError as exc:
            os.close(tun_fd)
            raise TunnelError(
                f"cannot relay {DEVICE}: raw IPPROTO_IPIP socket: {exc.strerror or exc}"
            ) from None
    except TunnelError as exc:
        print(f"calico-tunl: {exc}", file=sys.stderr)
        return 1
    index = socket.if_nametoindex(DEVICE)
    nl = Netlink()
    relay = Relay(RouteCache(kernel_lookup(nl, index)))
    loop = Loop(tun_fd, raw, route_monitor(), relay)
    if stop["asked"]:
        loop.stopping = True
    log.info("tunl0 is a TUN device (ifindex %d) relayed by this process; kernel: %s",
             index, kernel_why)  # fmt: skip

    warned: list[OSError] = []

    def save() -> None:
        if status_file:
            try:
                write_status(status_file, status_record("tun", relay, started, ifindex=index))
            except OSError as exc:
                if not warned:
                    log.warning("cannot write %s: %s", status_file, exc)
                warned.append(exc)

    save()
    try:
        loop.run(wake_r, max(0.05, args.status_interval), save)
    finally:
        os.close(tun_fd)  # the device goes with it
        raw.close()
        nl.close()
        save()
        log.info("stopped; %s", json.dumps(relay.counters.to_dict(), sort_keys=True))
    return 0


def _kernel_mode(how: str, status_file: Path | None, started: float, wake_r: int, stop) -> int:
    log.info("tunl0 is the kernel's ipip device (%s)", how)
    if status_file:
        with contextlib.suppress(OSError):
            write_status(status_file, status_record("kernel", None, started, device=how))
    while not stop["asked"]:
        with contextlib.suppress(InterruptedError):
            select.select([wake_r], [], [], 5.0)
        with contextlib.suppress(BlockingIOError):
            while os.read(wake_r, 256):
                pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
