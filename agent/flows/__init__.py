"""Flow log: denied packets (NFLOG), allowed connections (conntrack), Hubble-style records.

`prefix` holds the NFLOG prefix contract the rule renderer writes and the flow log reads,
`nflog` the NFLOG message parser and socket, `conntrack` the event reader,
`records` the records, ring and filters (pure), `collector` the threads that tie them.
"""
