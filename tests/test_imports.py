"""What importing dpo-jax does to the process: nothing printed, the output streams a
notebook installed left in place, no JAX backend started, and a command line whose
help, version and flag errors answer without importing JAX at all."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import dpo_jax


def run_python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=300)


def test_importing_and_building_envs_keeps_the_streams_and_prints_nothing():
    """JaxMARL's import resets sys.stdout/stderr to the process's own (a notebook's
    output then vanishes) and prints two lines; MJX prints two about Warp."""
    proc = run_python("""
        import io, json, sys
        out, err = io.StringIO(), io.StringIO()
        real = (sys.__stdout__, sys.__stderr__)
        sys.stdout, sys.stderr = out, err            # what a notebook kernel does
        import dpo_jax
        dpo_jax.make_env("mpe_spread")               # JaxMARL
        dpo_jax.make_env("smax_3m")                  # JaxMARL's SMAX
        dpo_jax.make_env("mamujoco_hopper_3x1")      # MJX
        kept = sys.stdout is out and sys.stderr is err
        untouched = (sys.__stdout__, sys.__stderr__) == real
        sys.stdout, sys.stderr = real
        print(json.dumps({"kept": kept, "untouched": untouched,
                          "out": out.getvalue(), "err": err.getvalue()}))
    """)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["kept"] and report["untouched"], report
    assert report["out"] == "", report["out"]
    assert "Submoduled" not in report["err"] and "warp" not in report["err"], report["err"]
    assert proc.stdout.strip().count("\n") == 0  # nothing else reached the real stdout


def test_import_is_lazy_and_starts_no_backend():
    proc = run_python("""
        import sys
        import dpo_jax
        heavy = [m for m in ("jax", "jaxmarl", "mujoco", "flax") if m in sys.modules]
        cfg = dpo_jax.preset("cpu", "mpe_spread")
        from dpo_jax.running import experiments, jobs  # the training modules, imported
        from jax._src import xla_bridge
        print(heavy, xla_bridge.backends_are_initialized(), dpo_jax.__version__)
    """)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split()[:2] == ["[]", "False"], proc.stdout
    assert dpo_jax.__version__ in proc.stdout


def test_help_version_and_flag_errors_do_not_import_jax():
    proc = run_python("""
        import contextlib, io, sys
        from dpo_jax.running import cli
        codes = []
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            codes.append(cli.main(["--version"]))
            codes.append(cli.main(["--help"]))
            for argv in (["train", "smax_3m", "--help"], ["train", "mpe_spread", "--nonsense"],
                         ["train", "mpe_spread", "--preset", "nope"]):
                try:
                    codes.append(cli.main(argv))
                except SystemExit as exit:
                    codes.append(exit.code)
        print(codes, "jax" in sys.modules)
    """)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == "[0, 0, 0, 2, 2] False", proc.stdout


def test_version_is_the_package_metadata():
    from importlib.metadata import version

    assert dpo_jax.__version__ == version("dpo-jax")
    proc = subprocess.run([sys.executable, "-m", "dpo_jax", "--version"], capture_output=True,
                          text=True, timeout=60)
    assert proc.stdout.strip() == f"dpo-jax {dpo_jax.__version__}"


def test_public_names_resolve():
    for name in dpo_jax.__all__:
        assert getattr(dpo_jax, name) is not None, name


def test_every_subpackage_resolves_as_an_attribute_without_importing_it_first():
    """``dpo_jax.config.preset_env_kwargs`` etc. in a fresh process (a script that only
    ran ``import dpo_jax``), and an unknown name names itself in the error."""
    proc = run_python("""
        import pkgutil
        import dpo_jax
        names = sorted(m.name for m in pkgutil.iter_modules(dpo_jax.__path__)
                       if not m.name.startswith("_"))
        missing = [n for n in names if not hasattr(dpo_jax, n)]
        print(names, missing, callable(dpo_jax.config.preset_env_kwargs))
        try:
            dpo_jax.not_a_module
        except AttributeError as err:
            print(err)
    """)
    assert proc.returncode == 0, proc.stderr[-3000:]
    first, second = proc.stdout.strip().splitlines()
    assert "'config'" in first and first.endswith("[] True"), first
    assert "not_a_module" in second
