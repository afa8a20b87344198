"""The contest's agents by name: what the CLI, ``fastretro eval`` and the profiler find them by.

Each agent is an :class:`AgentSpec`: its names (the checkpoint tag, the ``fastretro`` command,
the profiler's ``--agent``) and a loader that imports its module only when one of its parts is
asked for, so that listing the agents (``fastretro --help``) imports neither torch nor numba.
The loaders import the names each agent module exports, so a module may become a package
without this table changing. :func:`play_main` is ``fastretro play``: a checkpoint's tag names
the agent that plays it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from fastretro.errors import InvalidArgumentError

__all__ = ["AGENTS", "AgentSpec", "get", "play_main"]


@dataclass(frozen=True)
class AgentSpec:
    """One agent: its names and a lazy loader of its parts."""

    name: str
    """The agent's name: its checkpoints' tag and ``fastretro eval --agent NAME[:PATH]``."""
    command: str
    """Its ``fastretro`` subcommand."""
    help: str
    """The subcommand's line in ``fastretro --help``."""
    load: Callable[[], dict[str, Callable]]
    """Imports the agent; returns its parts by role (``main``, ``train``, ``config``, ``play``,
    ``eval_factory``, ``pool``), each present only where the agent has it."""
    profile: str | None = None
    """``fastretro profile --agent`` name, where the profiler runs it."""
    eval_takes_path: bool = True
    """``--agent NAME:PATH`` (a checkpoint or run folder) rather than ``--agent NAME``."""
    plays_checkpoints: bool = False
    """``fastretro play CKPT`` plays its checkpoints."""

    def part(self, role: str) -> Callable:
        """The agent's ``role`` part, importing the agent now.

        Raises:
            InvalidArgumentError: the agent has no such part.
        """
        parts = self.load()
        if role not in parts:
            raise InvalidArgumentError(
                f"The {self.name} agent has no {role}: it has {sorted(parts)}"
            )
        return parts[role]

    def main(self) -> Callable[[list[str] | None], int]:
        """Its command's ``main(argv) -> exit status``."""
        return self.part("main")

    def train(self) -> Callable:
        """``train(cfg, run_dir, *, watch, progress, max_seconds, on_loop) -> summary``."""
        return self.part("train")

    def config(self) -> type:
        """Its config dataclass (what ``train`` takes)."""
        return self.part("config")

    def play(self) -> Callable:
        """``play(checkpoint, game, state, episodes, record, greedy, seed) -> rewards``."""
        return self.part("play")

    def eval_factory(self) -> Callable:
        """``fastretro eval``'s factory; of ``PATH`` when ``eval_takes_path``."""
        return self.part("eval_factory")

    def pool(self) -> Callable:
        """``pool(game, state, num_envs, **options)``: the pool the agent acts on."""
        return self.part("pool")

    def run_main(self, argv: list[str] | None = None) -> int:
        """Run its command on ``argv``."""
        return self.main()(argv)


def _jerk() -> dict[str, Callable]:
    from fastretro.agents.jerk import JerkAgent, JerkConfig, main, make_pool

    return {"main": main, "config": JerkConfig, "eval_factory": JerkAgent, "pool": make_pool}


def _ppo2() -> dict[str, Callable]:
    from fastretro.agents.ppo2 import PPO2Config, main, make_eval_agent, make_pool, play, train

    return {
        "main": main,
        "train": train,
        "config": PPO2Config,
        "play": play,
        "eval_factory": make_eval_agent,
        "pool": make_pool,
    }


def _rainbow() -> dict[str, Callable]:
    from fastretro.agents.rainbow import (
        RainbowConfig,
        main,
        make_eval_agent,
        make_pool,
        play,
        train,
    )

    return {
        "main": main,
        "train": train,
        "config": RainbowConfig,
        "play": play,
        "eval_factory": make_eval_agent,
        "pool": make_pool,
    }


def _world_models() -> dict[str, Callable]:
    # Only the names the module exports (its __all__): it may become a package.
    from fastretro.agents.world_models import WorldModelsConfig, main, make_eval_agent, play

    return {
        "main": main,
        "config": WorldModelsConfig,
        "play": play,
        "eval_factory": make_eval_agent,
    }


#: Every agent, in the order ``fastretro --help`` lists their commands.
AGENTS: dict[str, AgentSpec] = {
    spec.name: spec
    for spec in (
        AgentSpec(
            "jerk",
            "jerk",
            "run the JERK baseline (scripted search) on a level with the pool",
            _jerk,
            profile="jerk",
            eval_takes_path=False,
        ),
        AgentSpec(
            "ppo2",
            "ppo",
            "train the PPO2 client (checkpoints, resume, fine-tune, TensorBoard)",
            _ppo2,
            profile="ppo",
            plays_checkpoints=True,
        ),
        AgentSpec(
            "rainbow",
            "rainbow",
            "train the Rainbow client (checkpoints, resume, fine-tune, TensorBoard)",
            _rainbow,
            profile="rainbow",
            plays_checkpoints=True,
        ),
        AgentSpec(
            "world_models",
            "world-models",
            "World Models: collect, vae, mdn, evolve, play",
            _world_models,
        ),
    )
}

_MISSING = object()


def get(name: str, default=_MISSING) -> AgentSpec:
    """The agent named ``name`` (its ``name``, its command or its profiler name).

    Raises:
        InvalidArgumentError: no such agent (unless ``default`` is given: then that).
    """
    for spec in AGENTS.values():
        if name in (spec.name, spec.command, spec.profile):
            return spec
    if default is not _MISSING:
        return default
    raise InvalidArgumentError(f"Expected an agent among {sorted(AGENTS)}, got {name!r}")


def play_main(argv: list[str] | None = None) -> int:
    """``fastretro play CKPT``: run a trained PPO2 or Rainbow policy (the checkpoint says which).

    Prints each episode's reward; ``--record DIR`` writes one .bk2 movie per episode. The
    checkpoint is opened without running code; one of the old format (a pickle) is refused
    before any emulator starts, with the command that converts it.
    """
    import argparse

    import numpy as np

    from fastretro.agents.checkpoints import checkpoint_agent

    parser = argparse.ArgumentParser(prog="fastretro play", description=play_main.__doc__)
    parser.add_argument("checkpoint")
    parser.add_argument("--game", default=None, help="default: the checkpoint's game")
    parser.add_argument("--state", default=None)
    parser.add_argument("--episodes", type=int, default=1)
    parser.add_argument("--record", metavar="DIR", help="write one .bk2 per episode here")
    parser.add_argument("--greedy", action="store_true", help="the best action, not a sample")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    # A file of no playable agent goes to PPO2's loader, which says what is wrong with it.
    agent = get(checkpoint_agent(args.checkpoint), None)
    play = (agent if agent and agent.plays_checkpoints else get("ppo2")).play()
    try:
        rewards = play(
            args.checkpoint,
            args.game,
            args.state,
            args.episodes,
            args.record,
            args.greedy,
            args.seed,
        )
    except InvalidArgumentError as exc:
        parser.error(str(exc))
    for i, r in enumerate(rewards):
        print(f"episode {i}: reward {r:g}")
    print(f"mean reward {np.mean(rewards):g} over {len(rewards)} episode(s)")
    return 0
