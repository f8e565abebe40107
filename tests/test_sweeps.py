"""Every numeric hyperparameter is data of one compiled program (``docs/sweeps.md``).

A swept run equals the same config trained alone; a bad value is named per field;
a static field is refused with why; every sweepable field changes the run it is
swept in (none is accepted and ignored); a changed number reuses the compiled
program; a swept job resumes, evaluates and plots with its values as labels."""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest

import dpo_jax
from dpo_jax.config import STATIC_FIELDS, SWEEPABLE_FIELDS
from dpo_jax.running import cli, program_cache, runspec, sweeps

ENV = "continuous_reach"  # Gaussian policies: init_log_std acts


def tiny(**overrides):
    """2 updates of 2 envs x 8 steps, 2 epochs x 2 minibatches, 8 units."""
    fields = dict(num_envs=2, num_steps=8, total_timesteps=2 * 8 * 2, num_epochs=2,
                  num_minibatches=2, hidden_size=8)
    return dpo_jax.TrainConfig(**{**fields, **overrides})


def one_device():
    return jax.devices()[:1]


# -- the same run, swept or alone ------------------------------------------------------

def test_a_swept_run_equals_the_same_config_trained_alone():
    """On one device the runs of a 2 x 2 grid equal the four configs trained each in
    its own call, to float32 rounding (the vmapped program may order sums another
    way): every metric of every update within 1e-5 relative."""
    cfg = tiny()
    grid = {"actor_lr": [1e-4, 3e-3], "entropy_coef": [0.0, 0.05]}
    swept = dpo_jax.train(cfg, ENV, algos=["dpo"], seeds=2, sweep=grid, progress=False,
                          devices=one_device())
    labels = swept.labels["pg"]
    assert [(lab["actor_lr"], lab["entropy_coef"]) for lab in labels[::2]] == [
        (1e-4, 0.0), (1e-4, 0.05), (3e-3, 0.0), (3e-3, 0.05)]
    for i, point in enumerate(sweeps.grid(grid)):
        alone = dpo_jax.train(cfg.replace(**point), ENV, algos=["dpo"], seeds=2,
                              progress=False, devices=one_device())
        for name, value in alone.metrics["pg"].items():
            np.testing.assert_allclose(
                np.asarray(swept.metrics["pg"][name][2 * i:2 * i + 2], np.float64),
                np.asarray(value, np.float64), rtol=1e-5, atol=1e-7,
                err_msg=f"point {point}: {name}")


# -- every sweepable field acts ----------------------------------------------------------

CHANGED = {
    "clip_eps": 0.01, "d_target": 10.0, "delta": 100.0, "omega": 10.0,
    "init_beta_sqrt": 5.0, "init_beta_kl": 5.0, "beta_min": 0.05, "beta_max": 0.005,
    "kl_sqrt_eps": 1.0, "entropy_coef": 0.5, "value_coef": 0.1, "value_norm_beta": 0.5,
    "actor_lr": 1e-2, "critic_lr": 1e-2, "adam_eps": 1.0, "max_grad_norm": 1e-3,
    "gamma": 0.5, "gae_lambda": 0.1, "init_log_std": -1.0, "adv_norm_eps": 10.0,
    "value_clip": 1e-3, "huber_delta": 0.01,
}
"""A value of each sweepable field far from the default (``tiny``'s config)."""


def test_every_sweepable_field_has_an_effect():
    """One program: the config's point and one point per field with that field
    changed; for each field, the run of an algorithm that uses it differs from the
    config's run of that algorithm. A field that is accepted but ignored fails."""
    assert set(CHANGED) == set(SWEEPABLE_FIELDS)  # a new field needs a value here
    cfg = tiny(d_target=0.01, beta_min=1e-3, beta_max=1e3)
    base = {"gamma": cfg.gamma}
    points = [base] + [{field: value} for field, value in CHANGED.items()]
    res = dpo_jax.train(cfg, ENV, algos=["dpo", "ippo"], seeds=1, sweep=points,
                        progress=False)
    labels, metrics = res.labels["pg"], res.metrics["pg"]

    def run_of(algo, field=None):
        for r, lab in enumerate(labels):
            changed = {f for f in CHANGED if lab.get(f) is not None
                       and lab[f] != (getattr(cfg, f) if f != "gamma" else cfg.gamma)}
            if lab["algo"] == algo and changed == ({field} if field else set()):
                return r
        raise AssertionError(f"no {algo} run with only {field} changed")

    for field in CHANGED:
        algo = "ippo" if field == "clip_eps" else "dpo"
        r, r0 = run_of(algo, field), run_of(algo)
        differs = [name for name, value in metrics.items()
                   if value.dtype.kind == "f" and not np.array_equal(value[r], value[r0])]
        assert differs, f"{field}={CHANGED[field]} trained exactly as the config's run"


def test_ippo_trains_once_per_point_of_the_fields_it_uses():
    cfg = tiny()
    spec = runspec.RunSpec(ENV, {}, cfg, algos=("dpo", "ippo"), seeds=1,
                           sweep=tuple(sweeps.grid({"d_target": [0.01, 0.1],
                                                    "clip_eps": [0.1, 0.2]})))
    found = [(e.algo, e.d_target, dict(e.point)) for e in runspec.entries(spec)]
    assert found == [("dpo", 0.01, {}), ("dpo", 0.1, {}),
                     ("ippo", None, {"clip_eps": 0.1}), ("ippo", None, {"clip_eps": 0.2})]
    names = [runspec.entry_name(spec, e.algo, e.d_target, e.point)
             for e in runspec.entries(spec)]
    assert names == ["dpo d=0.01", "dpo d=0.1", "ippo clip_eps=0.1", "ippo clip_eps=0.2"]


# -- bad input ---------------------------------------------------------------------

INVALID = {
    "clip_eps": 0.0, "d_target": -0.1, "delta": 1.0, "omega": 0.5, "init_beta_sqrt": 0.0,
    "init_beta_kl": -1.0, "beta_min": 0.0, "beta_max": 1e-4, "kl_sqrt_eps": -1e-8,
    "entropy_coef": -0.01, "value_coef": 0.0, "value_norm_beta": 1.0, "actor_lr": 0.0,
    "critic_lr": -1e-3, "adam_eps": 0.0, "max_grad_norm": -1.0, "gamma": 1.5,
    "gae_lambda": 1.01, "init_log_std": float("nan"), "adv_norm_eps": 0.0,
    "value_clip": -0.2, "huber_delta": 0.0,
}


@pytest.mark.parametrize("field", sorted(INVALID))
def test_an_invalid_value_is_named_with_its_field_and_point(field):
    assert set(INVALID) == set(SWEEPABLE_FIELDS)
    points = [{field: getattr(tiny(), field) or 1.0}, {field: INVALID[field]}]
    with pytest.raises(ValueError, match=rf"sweep point 1 .*{field}=.* is invalid: expected"):
        dpo_jax.train(tiny(), ENV, sweep=points, progress=False)


@pytest.mark.parametrize("field", ["num_envs", "hidden_size", "num_epochs", "share_params",
                                   "sampling", "algo"])
def test_a_static_field_is_refused_with_why(field):
    with pytest.raises(ValueError, match=rf"{field} cannot be swept: it is static"):
        dpo_jax.train(tiny(), ENV, sweep={field: [1, 2]}, progress=False)
    assert field in STATIC_FIELDS


@pytest.mark.parametrize("sweep, words", [
    ({"actor_lrr": [1e-3]}, "unknown field 'actor_lrr'"),
    ({"actor_lr": 1e-3}, "expected a non-empty list of numbers"),
    ({"actor_lr": []}, "expected a non-empty list of numbers"),
    ([{"value_clip": None}], "value_clip=None switches a term off"),
    ([{"actor_lr": "fast"}], "actor_lr='fast' is invalid: expected a finite real number"),
    ([{"actor_lr": 1e-3}, {"actor_lr": 1e-3}], "holds this point twice"),
    ([{}], "a point names at least one field"),
    ("actor_lr", "expected a dict of field -> values"),
])
def test_a_malformed_sweep_is_named(sweep, words):
    with pytest.raises(ValueError, match=words.replace("(", r"\(").replace(")", r"\)")):
        dpo_jax.train(tiny(), ENV, sweep=sweep, progress=False)


def test_baselines_and_a_second_d_target_list_are_refused():
    with pytest.raises(ValueError, match="iql take the config's values"):
        dpo_jax.train(tiny(), "mpe_spread", algos=["dpo", "iql"],
                      sweep={"actor_lr": [1e-3, 1e-4]}, progress=False)
    with pytest.raises(ValueError, match="d_target is both in d_targets and in the sweep"):
        dpo_jax.train(tiny(), ENV, d_targets=[0.1], sweep={"d_target": [0.01, 0.1]},
                      progress=False)


def test_random_points_are_drawn_from_their_ranges():
    pts = sweeps.random_points({"actor_lr": ("log", 1e-5, 1e-2), "gamma": (0.9, 0.999),
                                "entropy_coef": [0.0, 0.01]}, 200, seed=3)
    lr = np.array([p["actor_lr"] for p in pts])
    assert 1e-5 <= lr.min() and lr.max() <= 1e-2
    # log-uniform: about half of the draws below the geometric midpoint
    assert 0.4 < np.mean(lr < np.sqrt(1e-5 * 1e-2)) < 0.6
    assert {p["entropy_coef"] for p in pts} == {0.0, 0.01}
    assert all(0.9 <= p["gamma"] <= 0.999 for p in pts)
    assert pts == sweeps.random_points({"actor_lr": ("log", 1e-5, 1e-2), "gamma": (0.9, 0.999),
                                        "entropy_coef": [0.0, 0.01]}, 200, seed=3)


# -- one compile ---------------------------------------------------------------------

def test_a_changed_number_reuses_the_compiled_program():
    program_cache.clear()
    dpo_jax.train(tiny(), ENV, algos=["dpo"], seeds=2, progress=False)
    before = program_cache.info()
    again = dpo_jax.train(tiny(actor_lr=3e-4, gamma=0.9, value_clip=0.5), ENV,
                          algos=["dpo"], seeds=2, progress=False)
    after = program_cache.info()
    assert after["misses"] == before["misses"], "a changed number compiled a program"
    assert after["hits"] > before["hits"]
    assert again.outputs["pg"].compile_s < 1.0
    dpo_jax.train(tiny(num_envs=4), ENV, algos=["dpo"], seeds=2, progress=False)
    assert program_cache.info()["misses"] > after["misses"]  # a shape is another program


# -- a swept job folder ----------------------------------------------------------------

def test_a_swept_job_stops_resumes_evaluates_and_plots(tmp_path, capsys):
    out = tmp_path / "job"
    args = ["train", ENV, "--preset", "cpu", "--num-envs", "2", "--num-steps", "8",
            "--num-epochs", "1", "--num-minibatches", "1", "--hidden-size", "8",
            "--total-timesteps", str(2 * 8 * 4), "--seeds", "2", "--algos", "dpo", "ippo",
            "--sweep", "actor_lr=1e-4,1e-3", "--sweep", "d_target=0.01,0.1",
            "--checkpoint-every", "2", "--progress", "0", "--out", str(out)]
    assert cli.main(args + ["--stop-after", "2"]) == 0
    spec = json.loads((out / "spec.json").read_text())
    assert spec["format"] == runspec.JOB_FORMAT == 4
    assert spec["sweep"] == sweeps.grid({"actor_lr": [1e-4, 1e-3], "d_target": [0.01, 0.1]})
    assert cli.main(args + ["--resume"]) == 0
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert {(r["algo"], r["d_target"], r["actor_lr"]) for r in rows} == {
        ("dpo", 0.01, 1e-4), ("dpo", 0.1, 1e-4), ("dpo", 0.01, 1e-3), ("dpo", 0.1, 1e-3),
        ("ippo", None, 1e-4), ("ippo", None, 1e-3)}
    assert max(r["update"] for r in rows) == 3
    summary = dpo_jax.load(out).summary()
    assert list(summary.index) == ["dpo d=0.01 actor_lr=0.0001", "dpo d=0.1 actor_lr=0.0001",
                                   "dpo d=0.01 actor_lr=0.001", "dpo d=0.1 actor_lr=0.001",
                                   "ippo actor_lr=0.0001", "ippo actor_lr=0.001"]
    assert summary.loc["dpo d=0.1 actor_lr=0.001", "actor_lr"] == 1e-3
    assert summary.loc["dpo d=0.1 actor_lr=0.001", "d_target"] == 0.1
    capsys.readouterr()
    assert cli.main(["eval", str(out), "--episodes", "2"]) == 0
    assert "ippo actor_lr=0.001" in capsys.readouterr().out
    assert cli.main(["plot", str(out), "--to", str(tmp_path / "stats")]) == 0
    stats = json.loads((tmp_path / "stats" / "stats.json").read_text())
    assert "dpo d=0.1 actor_lr=0.001" in json.dumps(stats)


@pytest.mark.parametrize("argv, words", [
    (["--sweep", "actor_lr"], "expected FIELD=V1,V2"),
    (["--sweep", "actor_lr=1e-3,fast"], "'fast' is not a number"),
    (["--sweep", "num_envs=8,16"], "num_envs cannot be swept: it is static"),
    (["--sweep", "actor_lr=1e-3", "--sweep", "actor_lr=1e-4"], "actor_lr is swept twice"),
    (["--sweep", "d_target=0.1,0.2", "--d-targets", "0.1"], "give the values in one place"),
])
def test_the_cli_names_a_bad_sweep(argv, words, tmp_path, capsys):
    code = cli.main(["train", ENV, "--preset", "cpu", "--out", str(tmp_path / "j"), *argv])
    assert code == 2
    assert words in capsys.readouterr().err
    assert not (tmp_path / "j").exists()


def test_a_sweep_file_holds_points_or_a_grid(tmp_path, capsys):
    points = tmp_path / "fig9.json"
    points.write_text(json.dumps([{"delta": 1.5, "omega": 2}, {"delta": 3, "omega": 6}]))
    args = cli.parse_train(["stochastic_game_small", "--sweep-file", str(points)])
    assert cli.sweep_argument(args) == [{"delta": 1.5, "omega": 2}, {"delta": 3, "omega": 6}]
    grid = tmp_path / "grid.json"
    grid.write_text(json.dumps({"gamma": [0.9, 0.99]}))
    args = cli.parse_train(["stochastic_game_small", "--sweep-file", str(grid)])
    assert sweeps.points(cli.sweep_argument(args)) == [{"gamma": 0.9}, {"gamma": 0.99}]
    bad = tmp_path / "bad.json"
    bad.write_text("[{'delta': 1.5}]")
    for argv, words in ((["--sweep-file", str(bad)], "--sweep-file"),
                        (["--sweep-file", str(grid), "--sweep", "gamma=0.9"],
                         "give the sweep one way")):
        assert cli.main(["train", "stochastic_game_small", "--out", str(tmp_path / "j"),
                         *argv]) == 2
        assert words in capsys.readouterr().err
    assert not (tmp_path / "j").exists()
