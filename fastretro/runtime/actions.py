"""Action sets: what an action means, as a lookup table the worker applies in its compiled loop.

Every action set reduces an action row to a button mask through one table of masks
(``ext/worker_loop.pyx`` does the lookup):

- ``"filtered"``: stable-retro's default, a MultiBinary over the console's buttons; the pressed
  buttons' mask indexes a table of ``data.filter_action(mask)`` (impossible combinations such as
  UP+DOWN are filtered out, as stable-retro's FILTERED mode does).
- ``"discrete"`` and ``"multi_discrete"``: stable-retro's DISCRETE and MULTI_DISCRETE modes over
  the integration's button combos (``data.valid_actions()``), decoded exactly as
  ``RetroEnv.action_to_array`` does (not filtered, as there).
- ``"sonic7"``, ``"sonic10"`` and user lists: a Discrete over explicit button combos, each
  passed through ``filter_action`` like retro-baselines' ``SonicDiscretizer`` (which wrapped a
  FILTERED env).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import gymnasium
import numpy as np

from fastretro.config import ACTION_SETS, parse_combo
from fastretro.errors import InvalidArgumentError
from fastretro.runtime.protocol import ActionMode

#: retro-baselines' SonicDiscretizer (sonic_util.py), in its order.
SONIC7: tuple[tuple[str, ...], ...] = (
    ("LEFT",),
    ("RIGHT",),
    ("LEFT", "DOWN"),
    ("RIGHT", "DOWN"),
    ("DOWN",),
    ("DOWN", "B"),
    ("B",),
)
#: SONIC7 plus no-op, LEFT+B and RIGHT+B, the set the contest's winning entry used.
SONIC10: tuple[tuple[str, ...], ...] = (*SONIC7, (), ("LEFT", "B"), ("RIGHT", "B"))

NAMED = ACTION_SETS
#: ALE's action sets, for Atari 2600 games (fastretro/runtime/backends/ale.py): its 18 actions,
#: and each game's minimal set, as button combos on either backend.
ALE_SETS = ("ale_full", "ale_minimal")

# Decoding modes (fastretro/runtime/protocol.py defines them for both sides).
MODE_BITS, MODE_INDEX, MODE_GROUPS = ActionMode.BITS, ActionMode.INDEX, ActionMode.GROUPS


@dataclass(frozen=True)
class ActionChoice:
    """An action set as the user chose it, validated in the parent (no emulator needed).

    Attributes:
        name: one of :data:`NAMED`, or ``"custom"``.
        combos: for sonic7, sonic10, ALE's sets and custom ones, the buttons of each action.
    """

    name: str
    combos: tuple[tuple[str, ...], ...] = ()


def choose(
    actions: str | Sequence, buttons: Sequence[str], game: str | None = None
) -> ActionChoice:
    """Validate the ``actions`` option against the console's ``buttons``.

    Args:
        actions: a name from :data:`NAMED`, or a list of button combos, each a list of button
            names (``[["LEFT"], ["RIGHT", "B"], []]``) or a ``"+"``-joined string (``"RIGHT+B"``;
            ``""`` is no-op).
        buttons: the console's button names, in the order of the button array.
        game: the game (ALE's sets depend on it).

    Raises:
        InvalidArgumentError: unknown name, empty list, or a button the console lacks.
    """
    if isinstance(actions, str):
        if actions not in NAMED:
            raise InvalidArgumentError(
                f"Expected actions to be one of {list(NAMED)} or a list of button combos, "
                f"got {actions!r}"
            )
        if actions in ALE_SETS:
            return ActionChoice(actions, _ale_set(actions, game))
        combos = {"sonic7": SONIC7, "sonic10": SONIC10}.get(actions, ())
        if combos:
            _check_buttons(combos, buttons, actions)
        return ActionChoice(actions, combos)
    if not isinstance(actions, (list, tuple)) or not actions:
        raise InvalidArgumentError(
            f"Expected actions to be one of {list(NAMED)} or a non-empty list of button combos, "
            f"got {actions!r}"
        )
    combos = tuple(parse_combo(c) for c in actions)
    _check_buttons(combos, buttons, "actions")
    return ActionChoice("custom", combos)


def _ale_set(name: str, game: str | None) -> tuple[tuple[str, ...], ...]:
    from fastretro.runtime.backends import ale

    if game is None or not game.endswith("-Atari2600-v0"):
        raise InvalidArgumentError(
            f"actions={name!r} is ALE's action set, for Atari 2600 games; got {game!r}"
        )
    return ale.action_set(name, game)


def _check_buttons(combos, buttons: Sequence[str], what: str) -> None:
    known = [b for b in buttons if b]
    for combo in combos:
        for b in combo:
            if b not in known:
                raise InvalidArgumentError(
                    f"Unknown button {b!r} in {what}: this console's buttons are {known}"
                )


@dataclass(frozen=True)
class ActionTable:
    """The worker's lookup table for one action set (built where the emulator's data lives).

    Attributes:
        mode: MODE_BITS (row of 0/1 per button), MODE_INDEX (one index), MODE_GROUPS (one
            index per group).
        masks: int64 button masks; MODE_BITS: indexed by the pressed-buttons mask; MODE_INDEX:
            by the action; MODE_GROUPS: by ``offsets[g] + action[g]``, OR-ed over groups.
        offsets: int64 start of each group in ``masks`` (MODE_GROUPS only).
        sizes: the number of choices per action column (MODE_BITS: 2 per button).
    """

    mode: int
    masks: np.ndarray
    offsets: np.ndarray
    sizes: tuple[int, ...]


def build_table(choice: ActionChoice, data, buttons: Sequence[str]) -> ActionTable:
    """The lookup table of ``choice`` for a game, from its ``stable_retro`` GameData."""
    nb = len(buttons)
    none = np.zeros(0, np.int64)
    if choice.name == "filtered":
        masks = np.array([data.filter_action(m) for m in range(1 << nb)], np.int64)
        return ActionTable(MODE_BITS, masks, none, (2,) * nb)
    combos = [list(c) for c in data.valid_actions()]
    if choice.name == "discrete":
        # RetroEnv.action_to_array: the index is a mixed-radix number over the combo groups.
        n = math.prod(len(c) for c in combos)
        masks = np.zeros(n, np.int64)
        for a in range(n):
            rest, mask = a, 0
            for group in combos:
                mask |= group[rest % len(group)]
                rest //= len(group)
            masks[a] = mask
        return ActionTable(MODE_INDEX, masks, none, (n,))
    if choice.name == "multi_discrete":
        sizes = tuple(len(c) for c in combos)
        offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
        masks = np.array([m for group in combos for m in group], np.int64)
        return ActionTable(MODE_GROUPS, masks, offsets, sizes)
    index = {b: i for i, b in enumerate(buttons) if b}
    masks = np.array(
        [data.filter_action(sum(1 << index[b] for b in set(c))) for c in choice.combos], np.int64
    )
    return ActionTable(MODE_INDEX, masks, none, (len(masks),))


def space(table_mode: int, sizes: Sequence[int]) -> gymnasium.Space:
    """The single-env action space of an action table."""
    if table_mode == MODE_BITS:
        return gymnasium.spaces.MultiBinary(len(sizes))
    if table_mode == MODE_INDEX:
        return gymnasium.spaces.Discrete(sizes[0])
    return gymnasium.spaces.MultiDiscrete(list(sizes))
