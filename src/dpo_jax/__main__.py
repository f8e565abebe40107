"""``python -m dpo_jax``: the ``dpo-jax`` command line (``dpo_jax.cli``)."""

import sys

from dpo_jax.cli import main

sys.exit(main())
