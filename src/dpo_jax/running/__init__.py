"""Running jobs: many runs as one program (``experiments``), jobs with output
folders (``jobs``, ``runspec``), checkpoints, loggers, progress, results and plots,
evaluation of saved policies, statistics, and the ``dpo-jax`` command line."""
