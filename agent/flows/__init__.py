"""Flow log: denied packets (NFLOG), allowed connections (conntrack), Hubble-style records.

`nflog` holds the prefix contract the dataplane follows, `conntrack` the event reader,
`records` the records, ring and filters (pure), `collector` the threads that tie them.
"""
