"""Kernel side of the agent: read what is programmed, write the difference to the desired
state computed by `agent.calc`. Only `cali`-prefixed chains and ipsets, the one jump per
built-in chain, and routes with protocol 80 are ever touched."""
