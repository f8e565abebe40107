"""``python -m dpo_jax``: the ``dpo-jax`` command line (``dpo_jax.running.cli``)."""

import sys

from dpo_jax.running.cli import main

sys.exit(main())
