"""The Medivac for JaxMARL's SMAX, and SMAC's MMM2 scenario.

SMAX has no healer, so SMAC's MMM maps are missing from it. This module extends it
(subclasses; SMAX's own code is reused, not copied):

* :class:`MedivacSMAX` adds a seventh unit type, ``"medivac"``: a flying healer.
  Its target actions ``num_movement_actions + j`` heal unit ``j`` of its *own*
  team (SMAC's ``heal[agent_id]``); it never attacks. A heal restores
  ``heal_per_second * time_per_step`` health per world step to a living,
  non-flying teammate within ``heal_range``, never above the unit's maximum.
  The observation's unit-type one-hot grows from 6 to 7 bits.
* Flying units neither push nor are pushed by other units, and ground-only
  attackers (marauder, zealot, zergling) can neither target nor damage them.
* A team with only medivacs left loses, as in SMAC (``only_medivac_left``): its
  medivacs leave the battle (no longer alive), so SMAX's end-of-battle rules and
  win bonus apply. They keep their health, so, as in SMAC, where the medivac
  survives, the opponents are not paid for it.
* SMAX rewards the *absolute* net change of the opponents' health, so an enemy
  heal would pay the allies; here only net damage is rewarded.
* :class:`HeuristicEnemyMedivacSMAX` is SMAX's heuristic enemy with a medivac
  that heals the closest injured teammate in range and otherwise follows its
  team, and whose ground-only units ignore air units.

Medivac stats (:class:`MedivacStats`) follow SMAX's convention for its other
units: StarCraft II values at "faster" game speed, health and shields summed,
armour ignored. Sources: Liquipedia's Medivac page (150 HP, armour 1, speed 3.5,
sight 11, heal range 4, 12.6 HP/s) and SC2's unit data (radius 0.75). SMAC's
heal is further limited by energy (``unit_max_cooldown``: 200); energy is not
modelled here. SMAC uses one range (6) for all units' target masks; SMAX uses each
unit's own range, so the medivac's mask uses its heal range.
"""

from __future__ import annotations

import dataclasses
import inspect
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
from dpo_jax.envs._imports import import_jaxmarl

import_jaxmarl()
from jaxmarl.environments.smax import HeuristicEnemySMAX, Scenario
from jaxmarl.environments.smax.heuristic_enemy import create_heuristic_policy
from jaxmarl.environments.smax.smax_env import SMAX, State

Array = jax.Array

MEDIVAC = "medivac"
AIR_UNITS = frozenset({MEDIVAC})
# SC2: marines, stalkers and hydralisks shoot air; marauders, zealots and zerglings
# attack ground only; the medivac has no weapon.
ANTI_AIR_UNITS = frozenset({"marine", "stalker", "hydralisk"})

_UNIT_TABLES = (
    "unit_type_names", "unit_type_shorthands", "unit_type_velocities", "unit_type_attacks",
    "unit_type_attack_ranges", "unit_type_sight_ranges", "unit_type_radiuses",
    "unit_type_health", "unit_type_weapon_cooldowns",
)


@dataclasses.dataclass(frozen=True)
class MedivacStats:
    """The medivac's numbers in SMAX's units (see the module docstring for sources).

    Attributes:
      health: maximum health (SC2: 150).
      heal_per_second: health restored per second of healing (SC2 "faster": 12.6).
      heal_range: a heal needs the target closer than this (SC2: 4).
      velocity: movement speed (SC2 "faster": 3.5).
      sight_range: observation radius (SC2: 11).
      radius: unit radius (SC2: 0.75); unused for collisions, as it flies.
    """

    health: float = 150.0
    heal_per_second: float = 12.6
    heal_range: float = 4.0
    velocity: float = 3.5
    sight_range: float = 11.0
    radius: float = 0.75


def unit_tables(medivac: MedivacStats = MedivacStats()) -> dict[str, Any]:
    """SMAX's unit-type tables (its constructor defaults) with the medivac appended."""
    defaults = inspect.signature(SMAX.__init__).parameters
    base = {name: defaults[name].default for name in _UNIT_TABLES}
    extra = {
        "unit_type_names": MEDIVAC,
        "unit_type_shorthands": "V",
        "unit_type_velocities": medivac.velocity,
        "unit_type_attacks": 0.0,
        "unit_type_attack_ranges": medivac.heal_range,
        "unit_type_sight_ranges": medivac.sight_range,
        "unit_type_radiuses": medivac.radius,
        "unit_type_health": medivac.health,
        # normalises the cooldown feature only: a medivac has no weapon
        "unit_type_weapon_cooldowns": 1.0,
    }
    tables = {}
    for name, value in base.items():
        if isinstance(value, list):
            tables[name] = [*value, extra[name]]
        else:
            tables[name] = jnp.append(jnp.asarray(value, jnp.float32), extra[name])
    return tables


def unit_type_index(name: str) -> int:
    """Index of a unit type in :func:`unit_tables` (SMAX's order, then the medivac)."""
    names = unit_tables()["unit_type_names"]
    if name not in names:
        raise ValueError(f"unknown unit type {name!r}; expected one of {names}")
    return names.index(name)


def make_scenario(allies: tuple[tuple[str, int], ...],
                  enemies: tuple[tuple[str, int], ...]) -> Scenario:
    """A fixed SMAX ``Scenario`` from ``((unit_type, count), ...)`` per team."""
    types = [unit_type_index(t) for team in (allies, enemies) for t, n in team
             for _ in range(n)]
    num_allies = sum(n for _, n in allies)
    return Scenario(jnp.array(types, jnp.uint8), num_allies, len(types) - num_allies,
                    False, False)


# SMAC's MMM2 (docs/smac.md): 1 medivac, 2 marauders and 7 marines against
# 1 medivac, 3 marauders and 8 marines.
MMM2_ALLIES = (("medivac", 1), ("marauder", 2), ("marine", 7))
MMM2_ENEMIES = (("medivac", 1), ("marauder", 3), ("marine", 8))
MMM2 = make_scenario(MMM2_ALLIES, MMM2_ENEMIES)


class MedivacSMAX(SMAX):
    """SMAX with the medivac unit type (see the module docstring).

    Args:
      medivac: the medivac's stats.
      heal_only_injured: the mask offers heals only to teammates below full
        health (default). False offers every living, non-flying teammate in
        range, as SMAC's ``get_avail_agent_actions`` does (a heal of a healthy
        unit then does nothing).
      **smax_kwargs: SMAX's arguments (``scenario``, ``max_steps``, ...) except
        the unit-type tables.
    """

    def __init__(self, medivac: MedivacStats = MedivacStats(),
                 heal_only_injured: bool = True, **smax_kwargs: Any) -> None:
        tables = unit_tables(medivac)
        clash = sorted(set(tables) & set(smax_kwargs))
        if clash:
            raise TypeError(f"MedivacSMAX sets the unit-type tables itself; got {clash}")
        super().__init__(**tables, **smax_kwargs)
        names = tables["unit_type_names"]
        self.medivac = medivac
        self.heal_only_injured = heal_only_injured
        self.medivac_type = names.index(MEDIVAC)
        self.unit_type_is_air = jnp.array([n in AIR_UNITS for n in names])
        self.unit_type_hits_air = jnp.array([n in ANTI_AIR_UNITS for n in names])
        if self.scenario is not None:
            ally_types = [int(t) for t in self.scenario[: self.num_allies]]
            if self.medivac_type in ally_types and self.num_allies > self.num_enemies:
                raise ValueError(
                    f"MedivacSMAX: an ally medivac heals through its {self.num_enemies} "
                    f"target actions, which cannot name all {self.num_allies} allies"
                )

    # -- indices -------------------------------------------------------------------

    def _is_medivac(self, state: State) -> Array:
        return state.unit_types == self.medivac_type

    def _enemy_of(self, idx: Array, action: Array) -> Array:
        """Unit named by target action ``action`` of unit ``idx`` as an attack
        (SMAX's order: team 1 sees the allies reversed)."""
        slot = action - self.num_movement_actions
        unit = jnp.where(idx < self.num_allies, self.num_allies + slot,
                         self.num_allies - 1 - slot)
        return jnp.clip(unit, 0, self.num_agents - 1)

    def _teammate_of(self, idx: Array, action: Array) -> tuple[Array, Array]:
        """Unit named by target action ``action`` of unit ``idx`` as a heal, and
        whether it exists. Team 1 counts its own units in reverse, the order in
        which it observes them (as SMAX does for its attacks)."""
        slot = action - self.num_movement_actions
        ally = idx < self.num_allies
        unit = jnp.where(ally, slot, self.num_agents - 1 - slot)
        team_size = jnp.where(ally, self.num_allies, self.num_enemies)
        exists = (slot >= 0) & (slot < team_size)
        return jnp.clip(unit, 0, self.num_agents - 1), exists

    def _can_heal(self, state: State, healer: Array, target: Array,
                  injured_only: bool) -> Array:
        types = state.unit_types
        dist = jnp.linalg.norm(state.unit_positions[healer] - state.unit_positions[target])
        ok = (
            (types[healer] == self.medivac_type)
            & state.unit_alive[healer] & state.unit_alive[target]
            & (healer != target)
            & ~self.unit_type_is_air[types[target]]
            & (dist < self.medivac.heal_range)
        )
        if injured_only:
            ok = ok & (state.unit_health[target] < self.unit_type_health[types[target]])
        return ok

    # -- dynamics ------------------------------------------------------------------

    @partial(jax.jit, static_argnums=(0,))
    def _world_step(self, key: Array, state: State,
                    actions: tuple[Array, Array]) -> State:
        """SMAX's world step without the medivacs' and the impossible anti-air
        attacks, then the heals (on units that survived this world step)."""
        movement, target_actions = actions
        idx = jnp.arange(self.num_agents)
        types = state.unit_types
        is_target = target_actions >= self.num_movement_actions
        cannot_hit = ~self.unit_type_hits_air[types] & self.unit_type_is_air[
            types[self._enemy_of(idx, target_actions)]]
        no_attack = is_target & (self._is_medivac(state) | cannot_hit)
        attacks = jnp.where(no_attack, 0, target_actions)
        new_state = super()._world_step(key=key, state=state, actions=(movement, attacks))

        target, exists = self._teammate_of(idx, target_actions)
        heals = is_target & exists & jax.vmap(
            lambda i, j: self._can_heal(state, i, j, injured_only=False))(idx, target)
        amount = self.medivac.heal_per_second * self.time_per_step
        gained = jnp.zeros((self.num_agents,)).at[target].add(jnp.where(heals, amount, 0.0))
        health = new_state.unit_health
        healed = jnp.minimum(health + gained, self.unit_type_health[types])
        return new_state.replace(unit_health=jnp.where(health > 0, healed, health))

    def _push_units_away(self, state: State, firmness: float = 1.0) -> State:
        # SMAX only separates living pairs: hide the flyers from it.
        flying = self.unit_type_is_air[state.unit_types]
        pushed = super()._push_units_away(
            state.replace(unit_alive=state.unit_alive & ~flying), firmness)
        return pushed.replace(unit_alive=state.unit_alive)

    def _update_dead_agents(self, state: State) -> State:
        # SMAX re-derives ``alive`` from health every world step, so a stranded
        # medivac (health > 0) is taken out again each time, without a health
        # loss that ``compute_reward`` would count as damage
        state = super()._update_dead_agents(state)
        fighting = state.unit_alive & ~self._is_medivac(state)
        team = (jnp.arange(self.num_agents) >= self.num_allies).astype(jnp.int32)
        team_fights = jnp.stack([fighting[: self.num_allies].any(),
                                 fighting[self.num_allies:].any()])[team]
        return state.replace(unit_alive=state.unit_alive & team_fights)

    @partial(jax.jit, static_argnums=(0,))
    def compute_reward(self, state: State, health_before: Array,
                       health_after: Array) -> dict[str, Array]:
        rewards = super().compute_reward(state, health_before, health_after)
        change = (health_after - health_before) / self.unit_type_health[state.unit_types]
        # SMAX pays |net change| / team size of the opponents' health; remove the
        # part that a net heal of the opponents would pay
        opponents_gain = (
            jnp.maximum(change[self.num_allies:].sum(), 0.0) / self.num_enemies,
            jnp.maximum(change[: self.num_allies].sum(), 0.0) / self.num_allies,
        )
        return {agent: reward - opponents_gain[int(self.agent_ids[agent] >= self.num_allies)]
                for agent, reward in rewards.items()}

    # -- observations and masks ----------------------------------------------------

    @partial(jax.jit, static_argnums=(0,))
    def _observe_features(self, state: State, i: Array, j_idx: Array) -> Array:
        # a team-1 medivac can name more targets (its teammates) than team 1 has
        # attack actions, which SMAX's last-target feature is normalised by
        return super()._observe_features(state, i, j_idx).at[5].min(1.0)

    @partial(jax.jit, static_argnums=(0,))
    def get_avail_actions(self, state: State) -> dict[str, Array]:
        """SMAX's masks; medivac rows offer heals instead of attacks, and
        ground-only units cannot target flying ones."""
        masks = super().get_avail_actions(state)
        ally_rows = jnp.stack([masks[a] for a in self.agents[: self.num_allies]])
        enemy_rows = jnp.stack([masks[a] for a in self.agents[self.num_allies:]])
        ally_rows = self._retarget(state, ally_rows, jnp.arange(self.num_allies))
        enemy_rows = self._retarget(state, enemy_rows,
                                    jnp.arange(self.num_allies, self.num_agents))
        rows = list(ally_rows) + list(enemy_rows)
        return {agent: rows[i] for i, agent in enumerate(self.agents)}

    def _retarget(self, state: State, rows: Array, units: Array) -> Array:
        """Target columns of one team's mask rows ``[S, M + T]`` for ``units``."""
        num_targets = rows.shape[1] - self.num_movement_actions
        actions = self.num_movement_actions + jnp.arange(num_targets)
        types = state.unit_types

        def row(unit: Array, attack_ok: Array) -> Array:
            enemies = self._enemy_of(unit, actions)
            hits = self.unit_type_hits_air[types[unit]] | ~self.unit_type_is_air[types[enemies]]
            mates, exists = self._teammate_of(unit, actions)
            heal_ok = exists & jax.vmap(lambda j: self._can_heal(
                state, unit, j, injured_only=self.heal_only_injured))(mates)
            return jnp.where(types[unit] == self.medivac_type, heal_ok,
                             attack_ok.astype(bool) & hits)

        targets = jax.vmap(row)(units, rows[:, self.num_movement_actions:])
        return rows.at[:, self.num_movement_actions:].set(targets.astype(rows.dtype))


class HeuristicEnemyMedivacSMAX(HeuristicEnemySMAX):
    """SMAX's heuristic enemy on :class:`MedivacSMAX`.

    Non-medivac enemies play SMAX's heuristic (ground-only units do not see flying
    targets). An enemy medivac heals the closest injured, non-flying teammate in
    heal range; otherwise it moves towards the closest injured teammate it sees,
    else towards the closest teammate (stopping within half its heal range), else
    it moves like a SMAX heuristic unit that does not shoot.

    Args:
      enemy_shoots, attack_mode: as for ``HeuristicEnemySMAX``.
      medivac, heal_only_injured: as for :class:`MedivacSMAX`.
      **env_kwargs: SMAX's arguments (``scenario``, ``max_steps``, ...).
    """

    def __init__(self, enemy_shoots: bool = True, attack_mode: str = "closest",
                 medivac: MedivacStats = MedivacStats(), heal_only_injured: bool = True,
                 **env_kwargs: Any) -> None:
        super().__init__(enemy_shoots=enemy_shoots, attack_mode=attack_mode, **env_kwargs)
        # The base class builds a plain SMAX; swap in the medivac world and rebuild
        # everything derived from it.
        self._env = MedivacSMAX(medivac=medivac, heal_only_injured=heal_only_injured,
                                **env_kwargs)
        self.observation_spaces = {a: self._env.observation_spaces[a] for a in self.agents}
        self.action_spaces = {a: self._env.action_spaces[a] for a in self.agents}
        self.heuristic_policy = create_heuristic_policy(
            self._env, 1, shoot=enemy_shoots, attack_mode=attack_mode)
        self._follow_policy = create_heuristic_policy(self._env, 1, shoot=False)

    def _unit_slots(self, obs: Array) -> tuple[Array, Array]:
        """An enemy's observation as ``[N - 1, F]`` other-unit rows and its own
        unit-type one-hot."""
        env = self._env
        width = len(env.unit_features)
        slots = obs[: (env.num_agents - 1) * width].reshape(env.num_agents - 1, width)
        return slots, obs[-env.unit_type_bits:]

    def _type_flag(self, one_hot: Array, table: Array) -> Array:
        return (one_hot * table).sum(-1) > 0

    def _hide_untargetable(self, obs: Array) -> Array:
        """Zero the flying opponents in a ground-only unit's observation."""
        env = self._env
        slots, own_type = self._unit_slots(obs)
        slot_types = slots[:, 7:7 + env.unit_type_bits]
        opponent = jnp.arange(env.num_agents - 1) >= self.num_enemies - 1
        hide = (opponent & self._type_flag(slot_types, env.unit_type_is_air)
                & ~self._type_flag(own_type, env.unit_type_hits_air))
        slots = jnp.where(hide[:, None], 0.0, slots)
        return jnp.concatenate([slots.reshape(-1), obs[slots.size:]])

    def _medivac_action(self, obs: Array, enemy: Array, fallback_move: Array) -> Array:
        """The heuristic medivac's action from its observation (enemy index ``enemy``)."""
        env = self._env
        slots, _ = self._unit_slots(obs)
        mates = slots[: self.num_enemies - 1]
        health = mates[:, 0]
        offset = mates[:, 1:3] * env.medivac.sight_range
        dist = jnp.linalg.norm(offset, axis=-1)
        visible = (health > 0) & ~self._type_flag(mates[:, 7:7 + env.unit_type_bits],
                                                  env.unit_type_is_air)
        injured = visible & (health < 1.0)
        healable = injured & (dist < env.medivac.heal_range)
        # slot s holds teammate k = s, or s + 1 past the medivac's own place
        own = self.num_enemies - 1 - enemy
        slot = jnp.arange(self.num_enemies - 1)
        heal = env.num_movement_actions + slot + (slot >= own)
        heal_action = heal[jnp.argmin(jnp.where(healable, dist, jnp.inf))]

        follow = jnp.where(injured.any(), injured, visible)
        closest = jnp.argmin(jnp.where(follow, dist, jnp.inf))
        directions = jnp.array([[0.0, 1.0], [1.0, 0.0], [0.0, -1.0], [-1.0, 0.0]])
        toward = jnp.argmax(directions @ offset[closest])
        stop = env.num_movement_actions - 1
        near = dist[closest] < env.medivac.heal_range / 2
        move = jnp.where(visible.any(), jnp.where(near, stop, toward), fallback_move)
        return jnp.where(healable.any(), heal_action, move)

    def get_enemy_actions(self, key: Array, policy_state: Any,
                          enemy_obs: Array) -> tuple[dict[str, Array], Any]:
        env = self._env
        keys = jax.random.split(key, self.num_enemies)
        fight, fight_state = jax.vmap(self.heuristic_policy)(
            keys, policy_state, jax.vmap(self._hide_untargetable)(enemy_obs))
        moves, follow_state = jax.vmap(self._follow_policy)(keys, policy_state, enemy_obs)
        heal = jax.vmap(self._medivac_action)(enemy_obs, jnp.arange(self.num_enemies), moves)
        is_medivac = enemy_obs[:, -env.unit_type_bits + env.medivac_type] > 0
        actions = jnp.where(is_medivac, heal, fight)
        new_state = jax.tree.map(
            lambda a, b: jnp.where(is_medivac.reshape((-1,) + (1,) * (a.ndim - 1)), a, b),
            follow_state, fight_state)
        return {agent: actions[i] for i, agent in enumerate(self.enemy_agents)}, new_state
