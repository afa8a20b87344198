"""stable-retro's declarative scenarios, compiled for the worker to evaluate itself.

A scenario.json declares an episode's reward and end as tests on RAM variables (``data.json``):
for example Airstriker's reward is the change in ``score`` and its episode ends when ``lives``
is zero and ``gameover`` is 1. stable-retro evaluates it inside ``data.update_ram()``, which first
snapshots the whole RAM for the deltas, and that snapshot maps a fresh 64 KB shared mapping on
every call (munmap + mmap + a page fault per 4 KB: ~65 us, a fifth of an Airstriker frame here).
The worker reads every variable once per step anyway, for ``info`` (``data.lookup_all()``,
under 1 us), so for a declarative scenario it evaluates the same tests on those values and keeps
the previous step's values for the deltas (``EnvStepper`` in ext/worker_loop.pyx).

:func:`compile_scenario` mirrors stable-retro's ``Scenario::load`` and its defaults
(src/data.cpp), and accepts only what it mirrors exactly. Anything else (a Lua ``script``,
per-player ``rewards``, a field of an unexpected type) returns ``None`` with the reason, and
that env keeps stable-retro's own evaluation.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from fastretro.errors import InvalidArgumentError

# stable-retro's Operation names (src/data.cpp s_ops); the codes are fastretro's, mirrored in
# ext/worker_loop.pyx. An unknown or missing name is NOOP (the value itself), as in stable-retro.
OPS = {
    "": 0,  # noop
    "equal": 1,
    "negative-equal": 2,
    "not-equal": 3,
    "less-than": 4,
    "greater-than": 5,
    "less-or-equal": 6,
    "greater-or-equal": 7,
    "nonzero": 8,
    "zero": 9,
    "positive": 10,
    "negative": 11,
    "sign": 12,
}
OP_NOOP = 0


@dataclass(frozen=True)
class DoneNode:
    """A group of done tests: true when ``all`` (or any) of its tests and children are.

    Attributes:
        all: "condition": "all" (else any).
        tests: one row per variable test: (variable index, delta (1) or absolute (0), op code,
            reference).
        children: nested groups ("nodes").
    """

    all: bool
    tests: np.ndarray
    children: tuple[DoneNode, ...]


@dataclass(frozen=True)
class ScenarioPlan:
    """A declarative scenario, ready for ``worker_loop.VariableScenario``.

    Attributes:
        names: the variables read, in index order.
        reward_terms: one row per reward variable: (variable index, delta (1) or absolute (0),
            op code, reference).
        reward_factors: float32 (reward, penalty) per reward variable: the multiplier of a
            positive and of a negative measurement.
        time_reward: the reward's constant "time" term, added once per evaluation.
        done: the root of the done tests.
    """

    names: tuple[str, ...]
    reward_terms: np.ndarray
    reward_factors: np.ndarray
    time_reward: float
    done: DoneNode


#: Players a stable-retro scenario can have rewards for.
MAX_PLAYERS = 2


def player_scenario(scenario: Mapping, player: int = 0) -> dict:
    """The scenario as player ``player`` sees it: per-player ``"rewards"`` folded into ``"reward"``.

    Mirrors stable-retro's ``Scenario::load``: player 0 gets the variables of ``"reward"`` and
    then those of ``rewards[0]`` whose names ``"reward"`` lacks (``emplace`` keeps the first);
    a ``"time"`` or ``"script"`` in ``rewards[0]`` replaces that of ``"reward"``. Player ``p > 0``
    gets ``rewards[p]`` alone. A one-player stable-retro env reads ``current_reward(0)``, so
    player 0's is the env's reward. In Pong, player 0's reward is +1 when ``score2`` rises (the
    paddle the first joystick moves scores; it is ALE's own reward) and -1 when ``score1`` rises.

    The result has no ``"rewards"``, so :func:`compile_scenario` takes it.

    Raises:
        InvalidArgumentError: ``player`` is not in ``[0, MAX_PLAYERS)``, or a reward section is
            not a JSON object.
    """
    if isinstance(player, bool) or not isinstance(player, int) or not 0 <= player < MAX_PLAYERS:
        raise InvalidArgumentError(f"Expected player in [0, {MAX_PLAYERS}), got {player!r}")
    if player == 0 and isinstance(scenario, Mapping) and "rewards" not in scenario:
        return scenario  # a one-player scenario, as it is
    out = copy.deepcopy(dict(scenario))
    rewards = out.pop("rewards", [])
    own = out.pop("reward", {})
    own = own if player == 0 else {}
    if not isinstance(rewards, list) or not all(isinstance(r, Mapping) for r in [own, *rewards]):
        raise InvalidArgumentError(
            f"Expected 'reward' to be an object and 'rewards' a list of objects, got "
            f"{scenario.get('reward')!r} and {scenario.get('rewards')!r}"
        )
    reward = dict(own)
    if player < len(rewards):
        theirs = rewards[player]
        variables = dict(own.get("variables", {}))
        for name, spec in theirs.get("variables", {}).items():
            variables.setdefault(name, spec)
        if variables or "variables" in own or "variables" in theirs:
            reward["variables"] = variables
        for key in ("time", "script"):
            if key in theirs:
                reward[key] = theirs[key]
    if reward:
        out["reward"] = reward
    return out


class _Unsupported(Exception):
    pass


def compile_scenario(
    scenario: dict, variables: tuple[str, ...] | set[str]
) -> tuple[ScenarioPlan | None, str]:
    """Compile a parsed scenario.json for the worker, or say why it must stay with stable-retro.

    Args:
        scenario: the scenario file's JSON.
        variables: the game's RAM variables (``data.json``'s "info").

    Returns:
        ``(plan, "")``, or ``(None, reason)``.
    """
    try:
        return _Compiler(set(variables)).scenario(scenario), ""
    except _Unsupported as why:
        return None, str(why)


class _Compiler:
    def __init__(self, variables: set[str]) -> None:
        self.variables = variables
        self.names: list[str] = []

    def scenario(self, scenario) -> ScenarioPlan:
        if not isinstance(scenario, dict):
            raise _Unsupported("the scenario is not a JSON object")
        if "rewards" in scenario:
            raise _Unsupported("per-player 'rewards'")
        reward = self._section(scenario, "reward")
        done = self._section(scenario, "done")
        terms, factors = [], []
        for name, spec in self._variables(reward):
            terms.append(self._test(name, spec, default_delta=True))
            factors.append((self._float(spec, "reward"), self._float(spec, "penalty")))
        time_reward = 0.0
        if "time" in reward:
            # stable-retro adds the "time" spec measured on the value 1 at every evaluation.
            time = self._spec(reward["time"])
            _, _, op, reference = self._test(None, time, default_delta=True)
            measured = np.float32(_calculate(op, reference, 1))
            factor = self._float(time, "penalty" if measured < 0 else "reward")
            time_reward = float(measured * np.float32(factor)) if measured != 0 else 0.0
        done_root = self._node(done)  # before `names` is read: it adds the done variables
        return ScenarioPlan(
            names=tuple(self.names),
            reward_terms=np.array(terms, np.int64).reshape(-1, 4),
            reward_factors=np.array(factors, np.float32).reshape(-1, 2),
            time_reward=time_reward,
            done=done_root,
        )

    def _section(self, scenario: dict, key: str) -> dict:
        section = scenario.get(key, {})
        if not isinstance(section, dict):
            raise _Unsupported(f"'{key}' is not a JSON object")
        if "script" in section:
            raise _Unsupported(f"the {key} is computed by a Lua script")
        return section

    def _node(self, node: dict) -> DoneNode:
        tests = [
            self._test(name, spec, default_delta=False) for name, spec in self._variables(node)
        ]
        nodes = node.get("nodes", {})
        if not isinstance(nodes, dict):
            raise _Unsupported("'nodes' is not a JSON object")
        return DoneNode(
            all=node.get("condition") == "all",
            tests=np.array(tests, np.int64).reshape(-1, 4),
            children=tuple(self._node(self._spec(child)) for child in nodes.values()),
        )

    def _variables(self, section: dict):
        variables = section.get("variables", {})
        if not isinstance(variables, dict):
            raise _Unsupported("'variables' is not a JSON object")
        return [(name, self._spec(spec)) for name, spec in variables.items()]

    @staticmethod
    def _spec(spec) -> dict:
        if not isinstance(spec, dict):
            raise _Unsupported(f"a test is not a JSON object: {spec!r}")
        return spec

    def _test(self, name: str | None, spec: dict, default_delta: bool) -> tuple[int, int, int, int]:
        index = -1
        if name is not None:
            if name not in self.variables:
                raise _Unsupported(f"the scenario reads {name!r}, which data.json does not define")
            if name not in self.names:
                self.names.append(name)
            index = self.names.index(name)
        measurement = spec.get("measurement", "")
        delta = {"delta": True, "absolute": False}.get(measurement, default_delta)
        op = spec.get("op", "")
        reference = spec.get("reference", 0)
        if not isinstance(measurement, str) or not isinstance(op, str):
            raise _Unsupported(f"'measurement' or 'op' is not a string in {spec!r}")
        if isinstance(reference, bool) or not isinstance(reference, int):
            raise _Unsupported(f"'reference' is not an integer in {spec!r}")
        return index, int(delta), OPS.get(op, OP_NOOP), reference

    @staticmethod
    def _float(spec: dict, key: str) -> float:
        value = spec.get(key, 0.0)
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not math.isfinite(value)
        ):
            raise _Unsupported(f"'{key}' is not a finite number in {spec!r}")
        return float(np.float32(value))


def _calculate(op: int, reference: int, value: int) -> int:
    """stable-retro's ``calculate`` (src/utils.cpp), for the constant time term."""
    return {
        0: value,
        1: value == reference,
        2: value == -reference,
        3: value != reference,
        4: value < reference,
        5: value > reference,
        6: value <= reference,
        7: value >= reference,
        8: value != 0,
        9: value == 0,
        10: value > 0,
        11: value < 0,
        12: (value > 0) - (value < 0),
    }[op]
