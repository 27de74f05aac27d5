"""tunl0, Calico's IPIP device, on kernels with or without ipip (`calico-tunl`).

- `packet`: IPv4/IPIP bytes: strip the outer header, build one (pure).
- `relay`: per-packet decisions, the route cache, counters (pure).
- `main`: the `calico-tunl` program: the kernel's device, or a TUN device plus the relay.
"""
