"""One training run as one compiled program: the rollout, the trainer
(``make_train`` / ``make_trainer``), runs in chunks, and memory estimates."""

from dpo_jax import runtime

runtime.configure()
