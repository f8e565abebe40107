"""mkdocs hooks: generated numbers and flags on every page (``docs/generate.py``),
a strict check that every public name of ``dpo_jax`` has a docstring, and MathJax
served with the site (no CDN)."""

from __future__ import annotations

import importlib
import logging
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).parent))
sys.path.insert(0, str(pathlib.Path(__file__).parents[1] / "src"))

import generate  # noqa: E402

import warnings  # noqa: E402

# distrax -> tensorflow_probability's JAX backend, imported while the API pages are built
warnings.filterwarnings("ignore", message="jax.core.pytype_aval_mappings is deprecated",
                        category=DeprecationWarning)

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


def on_page_markdown(markdown: str, page, config, files) -> str:
    return generate.render(markdown)


MATHJAX = "assets/mathjax"
"""Where the site serves MathJax 3 (``extra_javascript`` in mkdocs.yml)."""


def on_post_build(config) -> None:
    """Copy MathJax's single-file TeX component and its fonts into the site, from
    the ``django-static-mathjax`` package (MathJax 3.2, no dependencies)."""
    import shutil

    try:
        import mathjax
    except ImportError:
        raise RuntimeError("the docs serve MathJax from the django-static-mathjax package: "
                           "pip install -e '.[docs]'") from None
    source = pathlib.Path(mathjax.__file__).parent / "static" / "mathjax" / "es5"
    target = pathlib.Path(config["site_dir"]) / MATHJAX
    target.mkdir(parents=True, exist_ok=True)
    shutil.copy2(source / "tex-mml-chtml.js", target / "tex-mml-chtml.js")
    shutil.copytree(source / "output" / "chtml" / "fonts", target / "output" / "chtml" / "fonts",
                    dirs_exist_ok=True)
