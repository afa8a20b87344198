"""Each env's game, state and scenario, resolved against stable-retro's data once, in the parent.

Nothing here creates an emulator (stable-retro allows one per process, and the parent has none):
games, ROMs, states and scenarios are checked against stable-retro's integration data on disk.
"""

from __future__ import annotations

import difflib
import json
import os
import re
from dataclasses import dataclass
from functools import lru_cache

from fastretro.errors import (
    GameNotFoundError,
    InvalidArgumentError,
    ScenarioNotFoundError,
    StateNotFoundError,
)
from fastretro.runtime.scenario import ScenarioPlan, compile_scenario, player_scenario

IMPORT_HINT = "import your ROMs with `python -m stable_retro.import DIR`"
ATARI_HINT = (
    'pip install "fastretro[atari]" runs it on ALE, and `fastretro roms --from-ale` imports it'
)


@lru_cache(maxsize=1)
def _retro_data():
    import stable_retro.data  # imported lazily: it loads every core's metadata

    return stable_retro.data


def integrations():
    """stable-retro's integration flag that covers every integration type (stable, contrib, ...)."""
    return _retro_data().Integrations.ALL


@lru_cache(maxsize=1)
def known_games() -> tuple[str, ...]:
    """Every game ID stable-retro integrates (with or without its ROM)."""
    return tuple(_retro_data().list_games(integrations()))


def rom_imported(game: str) -> bool:
    """True when the game's ROM is imported into stable-retro."""
    try:
        _retro_data().get_romfile_path(game, integrations())
    except FileNotFoundError:
        return False
    return True


def has_scenario(game: str, name: str) -> bool:
    """True when the game's integration ships the scenario ``name`` (``NAME.json``)."""
    return bool(_retro_data().get_file_path(game, f"{name}.json", integrations()))


def states(game: str) -> list[str]:
    """The save states the game's integration ships."""
    return list(_retro_data().list_states(game, integrations()))


@dataclass(frozen=True)
class GameSetup:
    """One env's game, state and scenario, resolved: what its worker needs to load it.

    Attributes:
        game: stable-retro game ID, e.g. ``"Airstriker-Genesis-v0"``.
        state: save-state name without ``.state`` (or a path), ``None`` for the game's default.
        scenario: scenario name (or a ``.json`` path), ``None`` for ``"scenario"``.
        scripted: the scenario computes reward or done in Lua, which may keep state of its own,
            so its reward cannot be read once per agent step in place of every frame.
        info_names: the integration's info variables (``data.json``), e.g. ``("lives", "score")``.
        buttons: the console's button names, in the order of the action array.
        scenario_plan: the scenario compiled for the worker to evaluate itself
            (fastretro/runtime/scenario.py), or ``None`` where it must stay with stable-retro.
        scenario_plan_why_not: why ``scenario_plan`` is ``None`` ("" when it is not).
        rom_imported: stable-retro has the ROM (else only ALE can run the game).
    """

    game: str
    state: str | None
    scenario: str | None
    scripted: bool
    info_names: tuple[str, ...]
    buttons: tuple[str, ...]
    scenario_plan: ScenarioPlan | None = None
    scenario_plan_why_not: str = ""
    rom_imported: bool = True


def resolve(game: str, state: str | None = None, scenario: str | None = None) -> GameSetup:
    """Validate one (game, state, scenario) triple and return its :class:`GameSetup`.

    Raises:
        GameNotFoundError: unknown game, or its ROM is not imported.
        StateNotFoundError: unknown state.
        ScenarioNotFoundError: unknown scenario.
    """
    data = _retro_data()
    inttype = integrations()
    if not isinstance(game, str):
        raise InvalidArgumentError(f"Expected game to be a str, got {type(game).__name__}")
    if game not in known_games():
        game = _atari_alias(game) or game
    if game not in known_games():
        hint = ""
        if f"{game}-v0" in known_games():
            hint = f" Game IDs end in -v0: did you mean {game}-v0?"
        else:
            close = difflib.get_close_matches(game, known_games(), n=3)
            if close:
                hint = f" Did you mean {', '.join(close)}?"
        raise GameNotFoundError(
            f"Unknown game {game!r}: stable-retro has no integration of that name.{hint} "
            "`fastretro games` lists them."
        )
    has_rom = rom_imported(game)
    if not has_rom and not ale_runs(game):
        raise GameNotFoundError(
            f"The ROM of {game} is not imported: {IMPORT_HINT}. "
            "Only Airstriker-Genesis-v0 ships with stable-retro"
            + (f"; ale-py ships this one: {ATARI_HINT}" if game.endswith("-Atari2600-v0") else ".")
        )

    if state is not None:
        if not isinstance(state, str):
            raise InvalidArgumentError(
                f"Expected state to be a str or None, got {type(state).__name__}"
            )
        name = state[: -len(".state")] if state.endswith(".state") else state
        if not os.path.isfile(state) and name not in data.list_states(game, inttype):
            states = data.list_states(game, inttype)
            raise StateNotFoundError(
                f"Unknown state {state!r} for {game}; expected one of {sorted(states)} "
                "or the path of a .state file."
            )
        state = state if os.path.isfile(state) else name

    scenario_path = _scenario_path(game, scenario)
    with open(scenario_path) as f:
        scenario_json = json.load(f)
    scripted = any(
        isinstance(scenario_json.get(key), dict) and "script" in scenario_json[key]
        for key in ("reward", "done")
    )

    info_path = data.get_file_path(game, "data.json", inttype)
    info: dict = {}
    if info_path:
        with open(info_path) as f:
            info = json.load(f).get("info", {})
    info_names = tuple(sorted(info))

    import stable_retro

    if has_rom:
        system = stable_retro.get_romfile_system(data.get_romfile_path(game, inttype))
    else:  # an Atari game ALE runs from ale-py's own ROM
        system = "Atari2600"
    buttons = tuple(b or "" for b in stable_retro.get_system_info(system)["buttons"])
    # A one-player env gets player 1's reward, as stable-retro's current_reward() does.
    plan, why_not = compile_scenario(player_scenario(scenario_json), _loadable_variables(info))
    return GameSetup(game, state, scenario, scripted, info_names, buttons, plan, why_not, has_rom)


def atari_game(name: str) -> str:
    """The stable-retro game ID of an Atari 2600 game.

    ``"Pong-Atari2600-v0"``, ``"Pong"`` and ALE's ROM name ``"pong"`` all name Pong.

    Raises:
        GameNotFoundError: no Atari 2600 integration of that name.
    """
    if not isinstance(name, str):
        raise InvalidArgumentError(f"Expected an Atari game name, got {type(name).__name__}")
    atari = [g for g in known_games() if g.endswith("-Atari2600-v0")]
    by_name = {g[: -len("-Atari2600-v0")].lower(): g for g in atari}
    key = name[: -len("-Atari2600-v0")] if name.endswith("-Atari2600-v0") else name
    key = key.lower().replace("_", "").replace("-", "")
    if key in by_name:
        return by_name[key]
    alias = _atari_alias(name) if "-v" in name else None
    if alias is not None:
        return alias
    close = difflib.get_close_matches(key, by_name, n=3)
    hint = f" Did you mean {', '.join(by_name[c] for c in close)}?" if close else ""
    raise GameNotFoundError(
        f"Unknown Atari 2600 game {name!r}: stable-retro has no Atari2600 integration of that "
        f"name.{hint}"
    )


#: gym's, ALE's and EnvPool's ids of an Atari game: ``ALE/Breakout-v5``, ``Breakout-v5``,
#: ``BreakoutNoFrameskip-v4``, ``BreakoutDeterministic-v4``, ``Breakout-v0``.
_ATARI_ID = re.compile(r"^(?:ALE/)?(?P<name>[A-Za-z]+?)(?:NoFrameskip|Deterministic)?-v[045]$")


def _atari_alias(name: str) -> str | None:
    """The stable-retro ID of an Atari game named by gym, ALE or EnvPool, or ``None``.

    The id names the game only: what it implies of the protocol is fastretro.envpool's and
    the gymnasium registry's business (fastretro/integrations/gym_registry.py).
    """
    match = _ATARI_ID.match(name)
    if match is None:
        return None
    try:
        return atari_game(match["name"])
    except GameNotFoundError:
        return None


def game_id(name: str) -> str:
    """A game ID as the command line takes it: Atari games may be named short (``"Pong"``).

    Names that end in ``-v0``, and names no Atari integration matches, come back unchanged
    (whatever takes them then says what is wrong with them).
    """
    if not isinstance(name, str) or name.endswith("-v0"):
        return name
    try:
        return atari_game(name)
    except InvalidArgumentError:
        return name


def ale_runs(game: str) -> bool:
    """Whether ALE's emulator can run ``game`` (ale-py installed and shipping its ROM)."""
    if not game.endswith("-Atari2600-v0"):
        return False
    try:
        from fastretro.runtime.backends.ale import game_table
    except ImportError:
        return False
    try:
        return game in game_table()
    except ImportError:  # ale-py is not installed
        return False


def _loadable_variables(info: dict) -> set[str]:
    # The variables stable-retro's GameData::load keeps: it skips a type shorter than 3
    # characters or wider than 8 bytes (its last character is the width).
    return {
        name
        for name, var in info.items()
        if isinstance(var, dict)
        and isinstance(var.get("type"), str)
        and len(var["type"]) >= 3
        and var["type"][-1] in "012345678"
        and "address" in var
    }


def _scenario_path(game: str, scenario: str | None) -> str:
    data = _retro_data()
    if scenario is None:
        path = data.get_file_path(game, "scenario.json", integrations())
        if not path:
            raise ScenarioNotFoundError(f"{game} has no default scenario.json")
        return path
    if not isinstance(scenario, str):
        raise InvalidArgumentError(
            f"Expected scenario to be a str or None, got {type(scenario).__name__}"
        )
    if scenario.endswith(".json"):
        if os.path.isfile(scenario):
            return scenario
        raise ScenarioNotFoundError(f"Scenario file {scenario!r} does not exist")
    path = data.get_file_path(game, f"{scenario}.json", integrations())
    if not path:
        raise ScenarioNotFoundError(
            f"Unknown scenario {scenario!r} for {game}; expected one of "
            f"{sorted(data.list_scenarios(game, integrations()))} or the path of a .json file."
        )
    return path


def resolve_all(config, num_envs: int) -> list[GameSetup]:
    """Every env's :class:`GameSetup` under an :class:`~fastretro.config.EnvConfig`.

    The same (game, state, scenario) is resolved only once.
    """
    triples = zip(*(config.per_env(name, num_envs) for name in ("game", "state", "scenario")))
    cache: dict[tuple, GameSetup] = {}
    setups = []
    for triple in triples:
        if triple not in cache:
            cache[triple] = resolve(*triple)
        setups.append(cache[triple])
    return setups
