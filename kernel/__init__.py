"""The edge toolkit: the few kernel interfaces calico-rkt speaks, in the style of the CNI
project's pkg/ns and pkg/ip.

    kernel.ns          network namespaces: open, enter for one thread and come back, run a
                       function inside one on a fresh thread, pinned namespaces; the
                       syscall wrappers (setns, unshare, mount) behind them
    kernel.netlink     netlink framing: messages, attributes, errors, a request/reply client
    kernel.rtnetlink   the link, address and route requests over NETLINK_ROUTE
    kernel.iptables    iptables-legacy-save / -restore, and the one parser of save output

Dependency rule: this package imports nothing else of the project. plugin/, agent/ and
rkt/ may import it; calico/ (pure vocabulary), calicoctl/ and console/ must not. Every
module here stays cheap to import: the CNI plugin's in-process path and every `rkt`
command load them.
"""
