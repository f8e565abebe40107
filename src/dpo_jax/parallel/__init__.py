"""Several devices (``sharding``: the run axis or the env axis) and several hosts
(``distributed``)."""
