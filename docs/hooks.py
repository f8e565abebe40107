"""mkdocs hooks: generated numbers and flags on every page (``docs/generate.py``),
and a strict check that every public name of ``dpo_jax`` has a docstring."""

from __future__ import annotations

import importlib
import logging
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).parent))
sys.path.insert(0, str(pathlib.Path(__file__).parents[1] / "src"))

import generate  # noqa: E402

log = logging.getLogger("mkdocs.plugins.dpo_jax")

DOCUMENTED_MODULES = (
    "dpo_jax.config", "dpo_jax.runtime", "dpo_jax.core.objectives", "dpo_jax.core.advantages",
    "dpo_jax.core.value_norm", "dpo_jax.core.networks", "dpo_jax.core.agents",
    "dpo_jax.training.trainer", "dpo_jax.training.rollout", "dpo_jax.training.chunks",
    "dpo_jax.training.faults", "dpo_jax.running.jobs", "dpo_jax.running.experiments",
    "dpo_jax.running.checkpoint", "dpo_jax.running.loggers", "dpo_jax.running.results",
    "dpo_jax.running.plots", "dpo_jax.running.progress", "dpo_jax.running.evaluate",
    "dpo_jax.running.stats", "dpo_jax.running.runspec", "dpo_jax.running.lock",
    "dpo_jax.parallel.sharding", "dpo_jax.parallel.distributed", "dpo_jax.envs.base",
    "dpo_jax.envs.registry", "dpo_jax.envs.stochastic_game", "dpo_jax.theory",
)


def on_pre_build(config) -> None:
    """Every public function and class of the documented modules has a docstring."""
    import inspect

    import dpo_jax

    missing = [f"dpo_jax.{name}" for name in dpo_jax.__all__
               if not name.isupper() and not name.startswith("__")
               and not inspect.getdoc(getattr(dpo_jax, name))]
    for module_name in DOCUMENTED_MODULES:
        module = importlib.import_module(module_name)
        if not module.__doc__:
            missing.append(module_name)
        for name, obj in vars(module).items():
            if name.startswith("_") or getattr(obj, "__module__", None) != module_name:
                continue
            if (inspect.isfunction(obj) or inspect.isclass(obj)) and not obj.__doc__:
                missing.append(f"{module_name}.{name}")
    for name in missing:
        log.warning(f"no docstring: {name}")


FIGURES = ("benchmarks/results/authors_parity/parity.png",)
"""Result figures outside ``docs/`` that pages show (copied into the site)."""


def on_files(files, config):
    from mkdocs.structure.files import File

    root = pathlib.Path(__file__).parents[1]
    for path in FIGURES:
        if (root / path).exists():
            files.append(File(path, str(root), config["site_dir"], config["use_directory_urls"]))
    return files


def on_page_markdown(markdown: str, page, config, files) -> str:
    return generate.render(markdown)
