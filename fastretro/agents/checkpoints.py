"""Checkpoints that cannot run code: tensors and plain data, written atomically, tagged by agent.

A checkpoint is one dict saved with ``torch.save`` that holds only tensors, numbers, strings,
``None`` and lists, tuples and dicts of those (state dicts included). It is read back with
``torch.load(..., weights_only=True)``, which builds no other object: a checkpoint from a
stranger (``fastretro play``, ``fastretro eval --agent ppo2:PATH``, ``--resume``,
``--init-from``, a World Models run folder) runs none of its code when opened.

Checkpoints written before this format (``FORMAT`` 1) were full pickles, which can hold code.
Loading one raises an :class:`~fastretro.errors.InvalidArgumentError` that names the one command
that converts a file the user trusts, ``fastretro convert-checkpoint OLD.pt NEW.pt``
(fastretro/tools/convert_checkpoint.py, the only place fastretro opens such a file).
"""

from __future__ import annotations

import os
import pickle
import shlex
import zipfile
from collections import OrderedDict
from collections.abc import Mapping

import numpy as np

from fastretro.agents.common import torch
from fastretro.errors import InvalidArgumentError

__all__ = [
    "FORMAT",
    "checkpoint_agent",
    "load_checkpoint",
    "load_state",
    "plain",
    "save_checkpoint",
]

#: The checkpoint format ``save_checkpoint`` writes (the ``"format"`` entry). 1, untagged: a
#: full pickle, numpy arrays and World Models' pickled CMA-ES included.
FORMAT = 2

#: The command that converts an old checkpoint (shown in the refusal).
CONVERT = "fastretro convert-checkpoint"


def plain(value, *, strings: bool = True):
    """``value`` with numpy arrays as tensors and numpy scalars as Python numbers.

    What ``torch.load(..., weights_only=True)`` reads back: tensors, ``None``, bools, ints,
    floats, strings (unless ``strings=False``), and lists, tuples and dicts (str or int keys) of
    those. A container with nothing to convert is returned as is (a state dict keeps its
    ``_metadata``); a numpy array becomes a tensor of its own copy.

    Raises:
        TypeError: anything else (a class instance, a function, an object array), named.
    """
    if isinstance(value, torch.Tensor) or value is None or type(value) in (bool, int, float):
        return value
    if type(value) is str and strings:
        return value
    # Before the containers: np.float64 is a float subclass that weights_only refuses.
    if isinstance(value, (np.bool_, np.integer, np.floating)):
        return value.item()
    if type(value) is np.ndarray and value.dtype.kind in "bif":
        return torch.from_numpy(np.array(value))
    if type(value) in (list, tuple):
        items = [plain(v, strings=strings) for v in value]
        return value if all(a is b for a, b in zip(items, value)) else type(value)(items)
    if type(value) in (dict, OrderedDict) and all(type(k) in (str, int) for k in value):
        items = {k: plain(v, strings=strings) for k, v in value.items()}
        if all(items[k] is v for k, v in value.items()):
            return value
        return type(value)(items)
    what = f"{value.dtype} array" if isinstance(value, np.ndarray) else type(value).__qualname__
    raise TypeError(f"A checkpoint holds tensors and plain data only, got a {what}")


def save_checkpoint(path: str, agent: str, config: dict, frames: int, **state) -> None:
    """``state`` (state dicts and more), the config and the frame count, written atomically.

    The file is tagged with ``agent`` (loading it as another agent's fails clearly) and with
    :data:`FORMAT`. numpy arrays and scalars in ``state`` are stored as tensors and Python
    numbers (:func:`plain`).

    Raises:
        TypeError: ``state`` holds something other than tensors and plain data.
    """
    payload = plain(
        {"agent": agent, "format": FORMAT, "config": config, "frames": int(frames), **state}
    )
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp"
    torch.save(payload, tmp)
    os.replace(tmp, path)


def _read(path: str, label: str) -> dict:
    """The dict of a checkpoint file, read without running any code it may hold."""
    if not os.path.isfile(path):
        raise InvalidArgumentError(f"No checkpoint at {path!r}")
    # torch.save writes a zip; anything else is not a checkpoint (and not worth converting).
    if not zipfile.is_zipfile(path):
        raise InvalidArgumentError(
            f"{path!r} is not a fastretro {label} checkpoint: not a file torch.save wrote"
        )
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        # weights_only met an object it does not build: a checkpoint of the old format, or a
        # file made to run code. Either way it stays unopened.
        raise InvalidArgumentError(
            f"{path!r} is a checkpoint in the old format (a full Python pickle): opening it "
            "could run any code it holds, so fastretro does not. If you trust where it came "
            f"from, convert it once with: {CONVERT} {shlex.quote(path)} NEW.pt"
        ) from None
    except Exception as exc:  # noqa: BLE001 - a damaged zip, a torch error: not a checkpoint
        raise InvalidArgumentError(
            f"{path!r} is not a fastretro {label} checkpoint: {exc}"
        ) from exc
    if not isinstance(ckpt, dict):
        raise InvalidArgumentError(
            f"{path!r} is not a fastretro {label} checkpoint: it holds a "
            f"{type(ckpt).__name__}, not a dict"
        )
    return ckpt


def _type_names(types) -> str:
    types = types if isinstance(types, tuple) else (types,)
    return " or ".join(t.__name__ for t in types)


def load_checkpoint(
    path: str, agent: str, label: str, required: Mapping[str, type | tuple[type, ...]] | None = None
) -> dict:
    """A checkpoint written by :func:`save_checkpoint` for ``agent``, read without running code.

    Args:
        path: the file.
        agent: the tag it must carry (a file without one was PPO2's).
        label: the agent's name in messages, e.g. "PPO2".
        required: the entries it must have, beyond ``config`` (a dict) and ``frames`` (an
            int), and their types.

    Raises:
        InvalidArgumentError: no file; not a checkpoint; one of the old format (a pickle: the
            message names the command that converts it); another agent's; or one without a
            required entry, or with one of another type.
    """
    ckpt = _read(path, label)
    # Checkpoints written before the tag existed were PPO2's.
    written_by = ckpt.get("agent", "ppo2")
    if written_by != agent:
        raise InvalidArgumentError(
            f"{path!r} is a fastretro {written_by} checkpoint, not a {label} one"
        )
    for key, types in {"config": dict, "frames": int, **(required or {})}.items():
        if key not in ckpt:
            raise InvalidArgumentError(
                f"{path!r} is not a fastretro {label} checkpoint: it has no {key!r}"
            )
        if not isinstance(ckpt[key], types):
            raise InvalidArgumentError(
                f"{path!r} is not a fastretro {label} checkpoint: expected {key!r} to be a "
                f"{_type_names(types)}, got {type(ckpt[key]).__name__}"
            )
    return ckpt


def load_state(target, ckpt: dict, key: str, path: str, label: str) -> None:
    """``target.load_state_dict(ckpt[key])`` (a network or an optimizer), failing clearly.

    Raises:
        InvalidArgumentError: the state does not fit ``target`` (other layers or shapes,
            another parameter count, entries of the wrong kind).
    """
    try:
        target.load_state_dict(ckpt[key])
    except (RuntimeError, KeyError, ValueError, TypeError, AttributeError, IndexError) as exc:
        detail = " ".join(str(exc).split())
        raise InvalidArgumentError(
            f"{path!r} does not fit this {label}: its {key!r} does not load ({detail})"
        ) from exc


def checkpoint_agent(path: str) -> str:
    """The agent that wrote the checkpoint at ``path`` (``"ppo2"`` when unknown or unreadable).

    Reads the file as :func:`load_checkpoint` does (no code runs). Raises nothing: the agent's
    own loader reports a missing, old or bad file.
    """
    try:
        ckpt = _read(path, "")
    except InvalidArgumentError:
        return "ppo2"
    agent = ckpt.get("agent", "ppo2")
    return agent if isinstance(agent, str) else "ppo2"
