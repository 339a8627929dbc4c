"""Where a cluster run (``run --ray``) runs a variant: on ``any`` node the driver picks, on the
node named (as its rows' ``host`` names it), or, written ``all``, once on every node: the way to
compare machines, each node's run a variant of its own. The coordinator places variants; the
worker never reads this. A run on one machine refuses any value but ``any``
(``stress.coordinator.cluster.placement``)."""

from __future__ import annotations

from stress.factors.factor import Factor

ANY = "any"
ALL = "all"  # expanded into one variant per node once the cluster's nodes are known

NODE = Factor(
    name="node",
    kind=str,
    default=ANY,
    doc="Where a cluster run (run --ray) runs the variant: 'any' node, a node by its host name "
    "(as the rows' host column names it), or 'all': once on every node, to compare machines. "
    "Only 'any' without --ray.",
)

FACTORS = (NODE,)
