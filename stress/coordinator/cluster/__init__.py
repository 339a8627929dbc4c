"""A run over the nodes of a Ray cluster (``run --ray``): the connection, one node-side
coordinator per node, what a node ships, and the driver that feeds the nodes and writes what
they record into the run directory."""
