"""Property tests (hypothesis): any configuration or env keyword argument either
validates or raises a ``ValueError`` that names a field; no other exception."""

from __future__ import annotations

import dataclasses
import inspect
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import dpo_jax
from dpo_jax.envs.registry import factory_of

WILD = st.one_of(
    st.none(), st.booleans(),
    st.integers(-(10**12), 10**12), st.integers(-3, 70),
    st.floats(allow_nan=True, allow_infinity=True), st.floats(-2.0, 2.0),
    st.text(max_size=4), st.lists(st.integers(0, 3), max_size=2),
)
STRINGS = st.sampled_from(["dpo", "ippo", "iql", "iddpg", "relu", "tanh", "kl", "sqrt_kl",
                           "sqrt_of_mean", "mean_of_sqrt", "raise", "ignore", "qmix"])

TRAIN_FIELDS = [f.name for f in dataclasses.fields(dpo_jax.TrainConfig)]
FIELD_IN_MESSAGE = re.compile(r"(TrainConfig|IQLConfig|IDDPGConfig)\.(\w+)=")


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from(TRAIN_FIELDS), st.one_of(WILD, STRINGS), max_size=6))
def test_train_config_validates_or_names_a_field(fields):
    try:
        cfg = dpo_jax.TrainConfig(**fields)
    except ValueError as err:
        match = FIELD_IN_MESSAGE.search(str(err))
        assert match and match.group(2) in TRAIN_FIELDS + ["learning_starts"], str(err)
        return
    # a valid config also resolves to its baseline's configuration cleanly
    if cfg.algo in dpo_jax.BASELINE_ALGORITHMS:
        try:
            dpo_jax.num_updates(cfg, dpo_jax.make_env("stochastic_game_small"))
        except ValueError as err:
            assert FIELD_IN_MESSAGE.search(str(err)) or "action space" in str(err), str(err)


CHEAP_ENVS = ["mpe_spread", "mpe_navigation", "mpe_line", "mpe_circle", "continuous_reach",
              "stochastic_game_small"]


@pytest.mark.parametrize("name", CHEAP_ENVS)
def test_env_kwargs_build_or_name_the_argument(name, monkeypatch):
    # the stochastic game accepts tables up to 4 GB; drawn sizes near that limit would
    # build one (and its float64 draws) in this process: a 100 MB limit keeps every
    # example cheap and still exercises the refusal
    monkeypatch.setattr("dpo_jax.envs.stochastic_game.MAX_TABLE_BYTES", 10**8)
    params = [p for p in inspect.signature(factory_of(name)).parameters.values()
              if p.kind is p.KEYWORD_ONLY or p.kind is p.POSITIONAL_OR_KEYWORD]
    names = [p.name for p in params] + ["not_an_argument"]

    @settings(max_examples=60, deadline=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
    @given(st.dictionaries(st.sampled_from(names), WILD, max_size=3))
    def check(kwargs):
        try:
            env = dpo_jax.make_env(name, **kwargs)
        except ValueError as err:
            assert any(key in str(err) for key in kwargs), (kwargs, str(err))
            return
        assert env.num_agents >= 1 and env.obs_dim >= 1 and env.max_steps >= 1

    check()
