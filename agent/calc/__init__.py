"""The desired dataplane of one node, as plain data, from the synced cluster state.

Pure: no I/O, no root. `Calculator().calculate(inputs)` returns a `Dataplane` (filter-table
chains with hashed rules, ipsets with members, routes, the local endpoints);
`agent.dataplane` turns the difference between that and the kernel into one
`iptables-legacy-restore --noflush`, one `ipset restore` and one `ip -batch`.

Semantics are those of `calico.policy` (the console's truth), rendered in Felix's layout,
one module per job (import from them directly; this package re-exports nothing):

- `names`: chain and ipset names and their hashing, prefixes, mark bits, the fixed chains.
- `model`: the data, in (`Inputs`) and out (`IptRule`, `Chain`, `IPSet`, `Route`,
  `LocalEndpoint`, `Dataplane`).
- `rules`: a Calico rule as iptables matches and verdicts, selector/CIDR/named-port ipsets,
  the flow log's NFLOG rules (their prefix format is `agent.flows.prefix`).
- `endpoints`: an endpoint's `cali-fw-`/`cali-tw-` chains and the shared program chains.
- `dispatch`: the from/to dispatch trees, interface -> endpoint chain.
- `static`: the hooks, cali-FORWARD/INPUT/OUTPUT, host protection, cali-wl-to-host.
- `routes`: IPAM blocks and remote endpoints -> routes.
- `calculator`: `Calculator`, which ties them together and owns the memo tables.
"""
