"""``fastretro convert-checkpoint OLD NEW``: rewrite a trusted old checkpoint in the safe format.

Checkpoints written before format 2 were full pickles, which can hold code
(fastretro/agents/checkpoints.py refuses them). :func:`_open_trusted` here is the one place
fastretro opens such a file, and only this command calls it, on a file its user named after
being told what opening it means.
"""

from __future__ import annotations

import argparse
import os
import pickle

from fastretro.agents.checkpoints import save_checkpoint
from fastretro.agents.common import torch
from fastretro.errors import InvalidArgumentError


def _open_trusted(path: str) -> dict:
    """An old-format checkpoint, fully unpickled: THIS RUNS ANY CODE THE FILE HOLDS.

    The one place fastretro opens such a file. Only ``fastretro convert-checkpoint`` calls it,
    on a file its user named after being told what opening it means; every other load goes
    through :func:`load_checkpoint`, which runs nothing.
    """
    ckpt = torch.load(path, map_location="cpu", weights_only=False)  # trusted by the user
    if isinstance(ckpt, dict) and isinstance(ckpt.get("es"), bytes):
        # World Models kept its CMA-ES as a pickle inside the (already trusted) file.
        ckpt["es"] = pickle.loads(ckpt["es"])
    return ckpt


def convert_checkpoint(src: str, dst: str) -> str:
    """Rewrite the trusted checkpoint ``src`` (any format) in the safe one at ``dst``.

    Opening ``src`` runs any code it holds: call this only on a file you trust. A World Models
    controller's pickled CMA-ES becomes its state as tensors and plain data. Returns the
    agent that wrote the checkpoint.

    Raises:
        InvalidArgumentError: ``src`` is missing, not a checkpoint, or holds objects with no
            plain form.
    """
    if not os.path.isfile(src):
        raise InvalidArgumentError(f"No checkpoint at {src!r}")
    try:
        ckpt = _open_trusted(src)
    except Exception as exc:  # noqa: BLE001 - whatever the unpickling met: not a checkpoint
        raise InvalidArgumentError(f"{src!r} is not a fastretro checkpoint: {exc}") from exc
    if not isinstance(ckpt, dict) or not {"config", "frames"} <= set(ckpt):
        raise InvalidArgumentError(f"{src!r} is not a fastretro checkpoint")
    agent = ckpt.pop("agent", "ppo2")
    ckpt.pop("format", None)
    if agent == "world_models_controller":
        from fastretro.agents.world_models.controller import upgrade_controller

        ckpt = upgrade_controller(ckpt)
    config, frames = ckpt.pop("config"), ckpt.pop("frames")
    try:
        save_checkpoint(dst, agent, config, frames, **ckpt)
    except TypeError as exc:
        raise InvalidArgumentError(f"{src!r} cannot be converted: {exc}") from exc
    return agent


def main(argv: list[str] | None = None) -> int:
    """``fastretro convert-checkpoint OLD NEW``: rewrite a trusted old checkpoint safely."""
    parser = argparse.ArgumentParser(
        prog="fastretro convert-checkpoint",
        description="Rewrite a checkpoint of the old format (a full Python pickle) in the safe "
        "one (tensors and plain data, opened without running code). Opening OLD runs any code "
        "it holds: convert only files you trust, such as your own runs'.",
    )
    parser.add_argument("old", help="the checkpoint to convert (a file you trust)")
    parser.add_argument("new", help="where to write the converted checkpoint")
    args = parser.parse_args(argv)
    try:
        agent = convert_checkpoint(args.old, args.new)
    except InvalidArgumentError as exc:
        parser.error(str(exc))
    print(f"wrote {args.new}: a {agent} checkpoint in the safe format")
    return 0
