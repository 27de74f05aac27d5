"""BGP through BIRD: the pure config renderer (`agent.bgp.render`) and the writer that puts
the rendered text in place and reloads BIRD (`agent.bgp.writer`)."""
