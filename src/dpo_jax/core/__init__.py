"""The maths: the objective family (eq. 19, 20), GAE, value normalisation, the
actor and critic networks, and N independent agents stacked on a leading axis."""

from dpo_jax import runtime

runtime.configure()
