"""The worker's own evaluation of declarative scenarios (runtime/scenario.py) vs stable-retro."""

from __future__ import annotations

import json
import os
import re

import numpy as np
import pytest
from conftest import DATA, GAME
from naive import ScenarioReference

from fastretro import VecRetroEnv
from fastretro.errors import InvalidArgumentError
from fastretro.runtime._ext.worker_loop import VariableScenario
from fastretro.runtime.scenario import compile_scenario

VARIABLES = ("a", "b", "c")

# Every op, both measurements, rewards and penalties, a time term, nested any/all nodes.
SCENARIOS = {
    "every-op-reward": {
        "reward": {
            "variables": {
                "a": {"reward": 1.5, "penalty": 0.25},
                "b": {"op": "sign", "measurement": "absolute", "reward": 2.0, "penalty": 3.0},
                "c": {"op": "greater-than", "reference": 1, "reward": 0.1},
            },
            "time": {"reward": -0.01},
        }
    },
    "ops-as-done-any": {
        "done": {
            "variables": {
                "a": {"op": "equal", "reference": 3},
                "b": {"op": "negative-equal", "reference": 3, "measurement": "delta"},
                "c": {"op": "less-or-equal", "reference": -3},
            }
        }
    },
    "ops-as-done-all": {
        "done": {
            "condition": "all",
            "variables": {
                "a": {"op": "not-equal", "reference": 0},
                "b": {"op": "greater-or-equal", "reference": -1},
                "c": {"op": "less-than", "reference": 2},
            },
        }
    },
    "nested-nodes": {
        "reward": {"variables": {"c": {"op": "negative", "reward": 1.0, "penalty": 1.0}}},
        "done": {
            "condition": "any",
            "variables": {"a": {"op": "zero", "measurement": "delta"}},
            "nodes": {
                "both": {
                    "condition": "all",
                    "variables": {"b": {"op": "positive"}, "c": {"op": "nonzero"}},
                    "nodes": {"deep": {"variables": {"a": {"op": "negative"}}}},
                }
            },
        },
    },
    "all-of-nothing-is-done": {"done": {"condition": "all"}},
    "no-done": {"reward": {"variables": {"a": {"reward": 1.0}}}},
}


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_matches_stable_retros_semantics_on_random_values(name):
    scenario = SCENARIOS[name]
    plan, why = compile_scenario(scenario, VARIABLES)
    assert plan is not None, why
    rng = np.random.default_rng(len(name))
    values = [dict(zip(VARIABLES, map(int, rng.integers(-4, 5, 3)))) for _ in range(400)]
    fast, ref = VariableScenario(plan), ScenarioReference(scenario, values[0])
    fast.start(values[0])
    got = [fast.evaluate(v) for v in values[1:]]
    want = [ref.update(v) for v in values[1:]]
    assert got == want
    # Both outcomes occur and rewards vary, or the comparison proves little.
    if scenario.get("done", {}).get("variables"):
        assert {d for _, d in want} == {True, False}
    if "reward" in scenario:
        assert len({r for r, _ in want}) >= 2


def test_deltas_restart_with_the_episode():
    plan, _ = compile_scenario({"reward": {"variables": {"a": {"reward": 1.0}}}}, VARIABLES)
    fast = VariableScenario(plan)
    fast.start({"a": 10, "b": 0, "c": 0})
    assert fast.evaluate({"a": 12, "b": 0, "c": 0}) == (2.0, False)
    fast.start({"a": 100, "b": 0, "c": 0})  # a new episode: deltas count from its start
    assert fast.evaluate({"a": 101, "b": 0, "c": 0}) == (1.0, False)


@pytest.mark.parametrize(
    "scenario, reason",
    [
        ({"reward": {"script": "lua:reward"}}, "the reward is computed by a Lua script"),
        ({"done": {"script": "lua:done"}}, "the done is computed by a Lua script"),
        ({"rewards": [{"variables": {"a": {}}}]}, "per-player 'rewards'"),
        (
            {"reward": {"variables": {"x": {"reward": 1}}}},
            "the scenario reads 'x', which data.json does not define",
        ),
        (
            {"done": {"variables": {"a": {"op": "equal", "reference": 1.5}}}},
            "'reference' is not an integer in {'op': 'equal', 'reference': 1.5}",
        ),
        (
            {"reward": {"variables": {"a": {"reward": "1"}}}},
            "'reward' is not a finite number in {'reward': '1'}",
        ),
        ({"done": {"nodes": []}}, "'nodes' is not a JSON object"),
    ],
)
def test_what_it_does_not_mirror_stays_with_stable_retro(scenario, reason):
    assert compile_scenario(scenario, VARIABLES) == (None, reason)


# Airstriker's variables: score, lives, gameover. Ends at the first life lost or 300 points.
CUSTOM = {
    "reward": {
        "variables": {
            "score": {"op": "positive", "reward": 0.5},
            "lives": {"reward": 1.0, "penalty": 10.0},
        },
        "time": {"reward": -0.01},
    },
    "done": {
        "nodes": {
            "hurt": {"variables": {"lives": {"op": "negative", "measurement": "delta"}}},
            "scored": {
                "condition": "all",
                "variables": {
                    "score": {"op": "greater-or-equal", "reference": 300},
                    "gameover": {"op": "zero"},
                },
            },
        }
    },
}


def _rollout(engine, scenario, frameskip, per_frame, steps):
    rng = np.random.default_rng(4)
    with VecRetroEnv(
        GAME,
        2,
        scenario=scenario,
        frameskip=frameskip,
        sticky_prob=0.25 if frameskip > 1 else 0.0,
        per_frame_reward=per_frame,
        observe=False,
        scenario_engine=engine,
    ) as env:
        assert env.scenario_engines == (
            ("fastretro",) * 2 if engine == "auto" else ("stable-retro",) * 2
        )
        env.reset(seed=9)
        out = []
        for _ in range(steps):
            _, rew, term, trunc, info = env.step(rng.integers(0, 2, (2, 12)))
            out.append(
                (rew.copy(), term.copy(), trunc.copy(), {k: info[k].copy() for k in env.info_names})
            )
    return out


@pytest.mark.parametrize(
    "scenario, frameskip, per_frame, steps",
    [
        (None, 4, None, 700),  # Airstriker's own: ends when lives is 0 and gameover 1
        (None, 1, None, 3000),
        ("custom", 4, None, 400),
        ("custom", 4, True, 400),
    ],
)
def test_the_pool_gives_what_stable_retro_gives(tmp_path, scenario, frameskip, per_frame, steps):
    if scenario == "custom":
        scenario = str(tmp_path / "custom.json")
        with open(scenario, "w") as f:
            json.dump(CUSTOM, f)
    fast = _rollout("auto", scenario, frameskip, per_frame, steps)
    slow = _rollout("stable-retro", scenario, frameskip, per_frame, steps)
    for (r1, t1, u1, i1), (r2, t2, u2, i2) in zip(fast, slow):
        np.testing.assert_array_equal(r1, r2)
        np.testing.assert_array_equal(t1, t2)
        np.testing.assert_array_equal(u1, u2)
        for k in i1:
            np.testing.assert_array_equal(i1[k], i2[k])
    rewards = np.array([r for r, *_ in slow])
    ends = np.array([t for _, t, *_ in slow])
    # Episodes end and rewards vary, or the comparison proves little.
    assert ends.sum() >= 2 and np.count_nonzero(rewards) >= 3


def test_scenario_engines_per_env():
    lua = os.path.join(DATA, "zigzag.json")
    with VecRetroEnv(GAME, 2, scenario=[None, lua], observe=False) as env:
        assert env.scenario_engines == ("fastretro", "stable-retro")


def test_bad_scenario_engine_is_refused():
    with pytest.raises(
        InvalidArgumentError,
        match=re.escape("Expected scenario_engine to be 'auto' or 'stable-retro', got 'lua'"),
    ):
        VecRetroEnv(GAME, 1, scenario_engine="lua")
