"""Regenerate ``fastretro/data/atari.json``: ALE's action sets, as the installed ale-py has them.

``python -m fastretro.tools.atari_data [--path PATH]`` loads every game of the ALE game table
(fastretro/runtime/backends/ale_games.py) in ALE to read its minimal action set, probes the
games whose buttons the two emulators wire differently, and writes the file the action sets
read (:func:`~fastretro.runtime.backends.ale_games.atari_data`). A developer tool: run it after
upgrading ale-py or stable-retro, and commit the file it writes.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from fastretro.runtime.backends.ale_games import (
    ale_rom_path,
    atari_data,
    data_path,
    game_table,
    import_ale,
)

_DATA_COMMAND = "python -m fastretro.tools.atari_data"


def _combo_of_action_name(name: str) -> list[str]:
    tokens = re.findall("UP|DOWN|LEFT|RIGHT|FIRE", name)
    if "".join(tokens) != name.replace("NOOP", ""):
        raise ValueError(f"Cannot read ALE action name {name!r} as joystick directions and FIRE")
    return ["BUTTON" if t == "FIRE" else t for t in tokens]


# The button probe of build_atari_data: from the start of an episode, run _PROBE_WARM frames with
# nothing pressed, then hold one button for _PROBE_HOLD frames, and compare the RAM with holding
# nothing. It runs in a subprocess (stable-retro allows one emulator per process).
_PROBE_WARM, _PROBE_HOLD, _PROBE_VERTICAL_FRAMES = 120, 30, 1500
_RETRO_PROBE = """
import json, sys
import numpy as np
import stable_retro as retro

warm, hold = int(sys.argv[1]), int(sys.argv[2])
effects = {}
for game in sys.argv[3:]:
    env = retro.make(game, inttype=retro.data.Integrations.ALL, render_mode=None,
                     use_restricted_actions=retro.Actions.ALL)
    index = {b: i for i, b in enumerate(env.buttons) if b}

    def run(button):
        env.reset()
        action = np.zeros(len(env.buttons), np.uint8)
        for _ in range(warm):
            env.step(action)
        if button:
            action[index[button]] = 1
        for _ in range(hold):
            env.step(action)
        return env.get_ram().astype(np.int64)

    base = run(None)
    effects[game] = {b: (run(b) - base).tolist() for b in ("BUTTON", "UP", "DOWN", "LEFT", "RIGHT")}
    env.close()
print(json.dumps(effects))
"""


def _new_ale(ale_py, rom: str):
    ale = ale_py.ALEInterface()
    ale.setInt("random_seed", 0)
    ale.setFloat("repeat_action_probability", 0.0)
    ale.setInt("frame_skip", 1)
    ale.loadROM(str(ale_rom_path(rom)))
    return ale


def _ignores_vertical(ale, combos) -> bool:
    # In paddle mode ALE drops UP/DOWN (ALEState::applyActionPaddles), so a random rollout and
    # the same rollout without them stay identical frame for frame; a joystick game that reads
    # them parts within a few frames. The two rollouts advance in turns of growing length.
    by_combo = {frozenset(c): a for a, c in enumerate(combos)}
    flat = [by_combo[frozenset(set(c) - {"UP", "DOWN"})] for c in combos]
    actions = np.random.default_rng(0).integers(0, len(combos), _PROBE_VERTICAL_FRAMES).tolist()
    ale.reset_game()
    state = flat_state = ale.cloneState()
    start, length = 0, 25
    while start < len(actions):
        turn = actions[start : start + length]
        ale.restoreState(state)
        rams = [(ale.act(a), ale.getRAM())[1] for a in turn]
        state = ale.cloneState()
        ale.restoreState(flat_state)
        for a, ram in zip(turn, rams):
            ale.act(flat[a])
            if not np.array_equal(ale.getRAM(), ram):
                return False
        flat_state = ale.cloneState()
        start, length = start + length, length * 2
    return True


# The reset probe of build_atari_data: what each reset_game follows. Each history plays
# random actions for a number of frames (-1: until the game ends, at most _RESET_MAX_FRAMES)
# from where the last one left off.
_RESET_HISTORIES, _RESET_MAX_FRAMES = (-1, 700, -1, 2300, 90, -1, 4100, -1), 6000


def state_without_clocks(state: bytes) -> bytes:
    """An ALE state's bytes without its frame count and the console's random generator.

    The two things a ``reset_game`` leaves different every time in a game that owes nothing to
    what came before it: ALE's count of frames, and the console's random generator, which the
    reset draws from (the RIOT timer's first value, M6532::reset) and nothing else does.

    Raises:
        ValueError: ``state`` is not laid out as ALE 0.12's ``ALEState.serialize()``.
    """
    # ALEState::serialize: six 4-byte ints (paddles, frame number, episode frame number, mode,
    # difficulty), then the console's state, whose "System" section is the cycle count and the
    # random generator as a length-prefixed string (System::save, Random::saveState).
    at = state.find(b"System")
    if at < 0:
        raise ValueError("Expected an ALE state with a System section")
    at += len(b"System") + 4
    length = int.from_bytes(state[at : at + 4], "little")
    return state[:8] + state[12:at] + state[at + 4 + length :]


def reset_is_fixed(ale, twin) -> bool:
    """Whether restoring the state of one ``reset_game`` plays exactly as running it again.

    ALE's reset restarts the console but keeps its RAM, and starts the RIOT timer from a random
    value, so a game whose start-up code reads either begins each episode differently
    (BeamRider, Seaquest, ...); and a few bank-switched cartridges do not map their banks back
    when a state is restored (Qbert parts from the real reset on the next frame). ``ale`` runs
    the real reset after each of ``_RESET_HISTORIES``; ``twin``, a second ALE of the same ROM
    playing the same random actions, restores the state its first reset reached. The game's
    reset is fixed when every reset reaches that state (:func:`state_without_clocks`) and the
    two then agree on every frame: reward, lives, end of game, RAM and picture.
    """
    rng = np.random.default_rng(0)
    actions = ale.getMinimalActionSet()
    ale.reset_game()
    twin.reset_game()
    fixed = twin.cloneState()
    first = state_without_clocks(fixed.serialize())
    for frames in _RESET_HISTORIES:
        for _ in range(_RESET_MAX_FRAMES if frames < 0 else frames):
            action = actions[rng.integers(len(actions))]
            if (
                ale.act(action) != twin.act(action)
                or ale.lives() != twin.lives()
                or ale.game_over() != twin.game_over()
                or not np.array_equal(ale.getRAM(), twin.getRAM())
                or not np.array_equal(ale.getScreen(), twin.getScreen())
            ):
                return False
            if ale.game_over(with_truncation=False):
                break
        ale.reset_game()
        twin.restoreState(fixed)
        if state_without_clocks(ale.cloneState().serialize()) != first:
            return False
    return True


def _ale_effects(ale, names: Sequence[str]) -> dict[str, np.ndarray]:
    def run(action: int) -> np.ndarray:
        ale.reset_game()
        for _ in range(_PROBE_WARM):
            ale.act(0)
        for _ in range(_PROBE_HOLD):
            ale.act(action)
        return ale.getRAM().astype(np.int64)

    base = run(0)
    return {
        b: run(names.index(a)) - base
        for a, b in (("FIRE", "BUTTON"), ("RIGHT", "RIGHT"), ("LEFT", "LEFT"))
    }


def _match_buttons(game: str, ale: dict[str, np.ndarray], retro: dict[str, list]) -> dict:
    # Each of ALE's buttons is the stable-retro button whose held effect on the RAM agrees with
    # its own on the most bytes (same bytes changed, same direction).
    buttons = {}
    for b, effect in ale.items():
        if not effect.any():
            buttons[b] = b  # no effect to match at this point of the game: keep the name
            continue
        scores = {
            r: int(np.sum((np.sign(effect) == np.sign(np.asarray(e))) & (effect != 0)))
            for r, e in retro.items()
        }
        best = max(scores.values())
        winners = [r for r, s in scores.items() if s == best]
        if best == 0 or len(winners) > 1:
            raise RuntimeError(f"Cannot tell which stable-retro button is ALE's {b} in {game}")
        buttons[b] = winners[0]
    return buttons


def build_atari_data() -> dict:
    """Compute ``atari.json``'s content from the installed ale-py and stable-retro.

    Loads every game of the game table (:func:`~fastretro.runtime.backends.ale_games.game_table`)
    in ALE to read its minimal action set. Games where ALE ignores UP and DOWN (its paddle
    games, and joystick games that never read them) are probed on both emulators (stable-retro
    in a subprocess: their ROMs must be imported, see ``fastretro roms --from-ale``) to find
    which stable-retro button does what ALE's FIRE, RIGHT and LEFT do; those whose buttons
    differ get a ``"buttons"`` entry (:func:`~fastretro.runtime.backends.ale_games.game_buttons`).

    Raises:
        ImportError: ale-py is not installed.
        RuntimeError: the stable-retro probe failed.
    """
    ale_py = import_ale()
    ale_py.ALEInterface.setLoggerMode(ale_py.LoggerMode.Error)
    actions = sorted(ale_py.Action.__members__.values(), key=lambda a: a.value)
    if [a.value for a in actions] != list(range(len(actions))):
        raise ValueError(f"ALE's actions are not numbered 0..n-1: {actions}")
    names = [a.name for a in actions]
    combos = [_combo_of_action_name(n) for n in names]
    games, effects = {}, {}
    for game, rom in game_table().items():
        ale = _new_ale(ale_py, rom)
        games[game] = {"rom": rom, "minimal": [a.value for a in ale.getMinimalActionSet()]}
        if reset_is_fixed(ale, _new_ale(ale_py, rom)):
            games[game]["fixed_reset"] = True
        if _ignores_vertical(ale, combos):
            effects[game] = _ale_effects(ale, names)
    if effects:
        run = subprocess.run(
            [sys.executable, "-c", _RETRO_PROBE, str(_PROBE_WARM), str(_PROBE_HOLD), *effects],
            capture_output=True,
            text=True,
            timeout=600,
        )
        if run.returncode != 0:
            raise RuntimeError(
                f"The stable-retro button probe failed (are the ROMs imported? "
                f"`fastretro roms --from-ale`):\n{run.stderr}"
            )
        retro = json.loads(run.stdout)
        for game, ale_effect in effects.items():
            buttons = _match_buttons(game, ale_effect, retro[game])
            if any(b != r for b, r in buttons.items()):
                games[game]["buttons"] = buttons
    return {
        "about": (
            f"ALE's actions as stable-retro Atari2600 button combos, and the minimal action set "
            f'of each stable-retro game ALE runs ("buttons": the stable-retro button of each '
            f'of ALE\'s where they differ; "fixed_reset": a reset reaches the same state '
            f"whatever came before it). Generated by `{_DATA_COMMAND}` from ale-py "
            f"{ale_py.__version__}."
        ),
        "ale_py": ale_py.__version__,
        "actions": [[n, c] for n, c in zip(names, combos)],
        "games": games,
    }


def write_atari_data(path: str | Path | None = None) -> dict:
    """Write :func:`build_atari_data` to ``path`` (default: the package's ``atari.json``).

    Returns:
        The data written.
    """
    path = Path(path) if path is not None else data_path()
    data = build_atari_data()
    # One action and one game a line: the file stays short enough to read and to diff.
    actions = ",\n".join(f"  {json.dumps(a)}" for a in data["actions"])
    games = ",\n".join(f"  {json.dumps(g)}: {json.dumps(e)}" for g, e in data["games"].items())
    path.write_text(
        "{\n"
        f' "about": {json.dumps(data["about"])},\n'
        f' "ale_py": {json.dumps(data["ale_py"])},\n'
        f' "actions": [\n{actions}\n ],\n'
        f' "games": {{\n{games}\n }}\n'
        "}\n"
    )
    atari_data.cache_clear()
    return data


def main(argv: list[str] | None = None) -> int:
    """``python -m fastretro.tools.atari_data [--path PATH]``: write ``atari.json``."""
    parser = argparse.ArgumentParser(
        prog=_DATA_COMMAND,
        description="Regenerate fastretro's Atari data (ALE's action sets) from ale-py.",
    )
    parser.add_argument("--path", default=None, help="where to write it (default: the package's)")
    args = parser.parse_args(argv)
    try:
        data = write_atari_data(args.path)
    except ImportError as e:
        print(e, file=sys.stderr)
        return 1
    path = args.path or data_path()
    print(f"wrote {path}: ALE's {len(data['actions'])} actions, {len(data['games'])} games")
    return 0


if __name__ == "__main__":
    sys.exit(main())
