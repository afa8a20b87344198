"""What every learning agent needs, written once: run start, episodes, checkpoints, play, eval, CLI.

PPO2 and Rainbow keep their learning in their own files; around it they share the same
skeleton, which lives here:

- :func:`check_fields`, :func:`config_from`, :func:`load_agent_checkpoint`: a config's ranges,
  a config and a checkpoint read back;
- :func:`begin_run`: ``--resume`` / ``--init-from`` (checkpoints read before any emulator
  starts) and the device;
- :class:`Episodes` (each env's running reward, one monitor.csv row per ended episode) and
  :class:`CheckpointSchedule` (``ckpt_FRAMES.pt`` every so often, ``last.pt`` at the end),
  both in :class:`RunLoop` with the run logs, the progress bar and the summary;
- :func:`check_compatible`: a checkpoint against the env it is about to act on;
- :func:`play_episodes` / :func:`play_on` (``fastretro play``'s loop) and :func:`eval_factory`
  (``fastretro eval --agent NAME:PATH``'s agent factory), both driven by one
  ``choose(obs) -> actions`` function or an agent with ``act`` (and ``observe``, for a policy
  with memory);
- :func:`config_parser` / :func:`config_values` / :func:`run_training`: the training command
  built from a config dataclass and its presets (:func:`config_flags`: one flag per field, its
  docstring as help);

``fastretro play CKPT`` (:func:`fastretro.agents.registry.play_main`) sends a checkpoint to its
agent's ``play``, which runs :func:`play_on`.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from fastretro.agents import checkpoints
from fastretro.agents.common import RunLog, torch
from fastretro.errors import InvalidArgumentError

__all__ = [
    "CheckpointSchedule",
    "Episodes",
    "RunLoop",
    "RunStart",
    "begin_run",
    "check_compatible",
    "check_fields",
    "config_flags",
    "config_from",
    "config_parser",
    "config_values",
    "eval_factory",
    "field_docs",
    "flag_values",
    "level_flags",
    "levels_of",
    "load_agent_checkpoint",
    "n_actions_of",
    "play_episodes",
    "play_on",
    "policy_parts",
    "run_training",
    "same_actions",
    "summary_line",
]

#: ``choose(observations) -> actions``: a policy on a batch of observations (numpy in and out).
Choose = Callable[[np.ndarray], np.ndarray]


# -- configs and checkpoints ----------------------------------------------------------------


def check_fields(cfg, *, ints=(), counts=(), positive=(), unit=(), nonnegative=()) -> None:
    """Raise InvalidArgumentError naming the first field of ``cfg`` out of its range.

    ``ints``: ints >= 1; ``counts``: ints >= 0; ``positive``: > 0; ``unit``: in [0, 1];
    ``nonnegative``: >= 0 (bools are not ints here).
    """
    for names, low, kind in ((ints, 1, "an int >= 1"), (counts, 0, "an int >= 0")):
        for name in names:
            value = getattr(cfg, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise InvalidArgumentError(f"Expected {name} to be {kind}, got {value!r}")
    checks = (
        (positive, lambda v: v > 0, "> 0"),
        (unit, lambda v: 0.0 <= v <= 1.0, "in [0, 1]"),
        (nonnegative, lambda v: v >= 0, ">= 0"),
    )
    for names, ok, what in checks:
        for name in names:
            value = getattr(cfg, name)
            if not ok(value):
                raise InvalidArgumentError(f"Expected {name} {what}, got {value!r}")


def config_from(config_cls: type, values: dict, *, strict: str | None = None):
    """A ``config_cls`` of ``values``; fields the class does not have dropped.

    A checkpoint's saved values may name fields the class no longer has. ``strict``: the
    settings' owner (e.g. "World Models"): values the user gave, where an unknown name is a
    mistake to report rather than drop.

    Raises:
        InvalidArgumentError: with ``strict``, a name that is not a field (with the closest).
    """
    known = {f.name for f in dataclasses.fields(config_cls)}
    if strict is not None:
        unknown = sorted(set(values) - known)
        if unknown:
            close = difflib.get_close_matches(unknown[0], known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise InvalidArgumentError(f"Unknown {strict} settings: {unknown}{hint}")
    return config_cls(**{k: v for k, v in values.items() if k in known})


def load_agent_checkpoint(
    path: str, agent: str, label: str, head: tuple[str, str], config_from_checkpoint, config: str
) -> dict:
    """An agent's checkpoint, read without running code, with a network and a config.

    Args:
        path: the file.
        agent: the tag it must carry.
        label: the agent's name in messages, e.g. "PPO2".
        head: the key of a 2-D weight its ``model`` must hold, and the layer's name.
        config_from_checkpoint: builds the agent's config from the checkpoint.
        config: the config class's name (in the message).

    Raises:
        InvalidArgumentError: as :func:`~fastretro.agents.checkpoints.load_checkpoint`; or no
            such weight in ``model``; or a ``config`` the agent's config class does not take.
    """
    ckpt = checkpoints.load_checkpoint(path, agent, label, required={"model": dict})
    bad = f"{path!r} is not a fastretro {label} checkpoint:"
    key, layer = head
    weight = ckpt["model"].get(key)
    if not isinstance(weight, torch.Tensor) or weight.dim() != 2:
        raise InvalidArgumentError(f"{bad} its 'model' has no {layer} ({key!r})")
    try:
        config_from_checkpoint(ckpt)
    except (TypeError, ValueError) as exc:
        raise InvalidArgumentError(f"{bad} its 'config' is not a {config}'s ({exc})") from exc
    return ckpt


# -- starting a run --------------------------------------------------------------------------


@dataclass
class RunStart:
    """Where a training run starts: its config, the checkpoints it reads, its first frame."""

    cfg: object
    """The config to train with (the resumed run's, with the new ``total_frames``)."""
    ckpt: dict | None
    """The ``--resume`` checkpoint (weights, optimizer, frames), or None."""
    source: dict | None
    """The ``--init-from`` checkpoint (weights only), or None."""
    start_frames: int
    """Frames already trained (the resumed checkpoint's), else 0."""
    device: torch.device
    """Where the networks live (``cfg.device``, ``auto``: cuda when present)."""


def begin_run(
    cfg,
    resume: str | None,
    init_from: str | None,
    load_checkpoint: Callable[[str], dict],
    config_from_checkpoint: Callable[[dict], object],
) -> RunStart:
    """Read ``--resume`` / ``--init-from`` and check the config, before any emulator starts.

    A resumed run takes its checkpoint's config, but for ``total_frames`` (the new budget).

    Raises:
        InvalidArgumentError: both given; a checkpoint refused by ``load_checkpoint``; a bad
            config value (``cfg.check()``).
    """
    start_frames = 0
    ckpt = None
    if resume and init_from:
        raise InvalidArgumentError("Pass --resume or --init-from, not both")
    if resume:
        ckpt = load_checkpoint(resume)
        total = cfg.total_frames
        cfg = config_from_checkpoint(ckpt)
        cfg.total_frames = total
        start_frames = int(ckpt["frames"])
    cfg.check()
    # Before the pools start: a bad checkpoint is refused without starting an emulator.
    source = load_checkpoint(init_from) if init_from else None
    auto = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(auto if cfg.device == "auto" else cfg.device)
    return RunStart(cfg, ckpt, source, start_frames, device)


class Episodes:
    """Each env's running episode reward and length; a monitor.csv row per ended episode."""

    def __init__(self, num_envs: int, runlog: RunLog) -> None:
        self.reward = np.zeros(num_envs)
        self.length = np.zeros(num_envs, np.int64)
        self.recent: list[float] = []
        self.count = 0
        self.runlog = runlog
        self._index = np.arange(num_envs)

    def add(self, envs, rewards: np.ndarray, done: np.ndarray, frames: int) -> None:
        """One step of the envs ``envs`` (a slice or an index array), in the game's rewards."""
        self.reward[envs] += rewards
        self.length[envs] += 1
        for i in self._index[envs][np.flatnonzero(done)]:
            self.runlog.episode(float(self.reward[i]), int(self.length[i]), frames)
            self.recent.append(float(self.reward[i]))
            self.count += 1
            self.reward[i], self.length[i] = 0.0, 0

    def mean100(self, empty=0.0):
        """The mean reward of the last 100 ended episodes; ``empty`` before the first."""
        return float(np.mean(self.recent[-100:])) if self.recent else empty


class CheckpointSchedule:
    """``checkpoints/ckpt_FRAMES.pt`` every ``every`` frames (0: never) and ``last.pt``."""

    def __init__(self, run_dir: str, every: int, start_frames: int, save: Callable) -> None:
        self.folder = os.path.join(run_dir, "checkpoints")
        self.every, self.last, self.save = every, start_frames, save

    def maybe(self, frames: int) -> None:
        """Save ``ckpt_FRAMES.pt`` if ``every`` frames have passed since the last one."""
        if self.every and frames - self.last >= self.every:
            self.save(os.path.join(self.folder, f"ckpt_{frames}.pt"), frames)
            self.last = frames

    def final(self, frames: int) -> str:
        """Save ``last.pt``; its path."""
        path = os.path.join(self.folder, "last.pt")
        self.save(path, frames)
        return path


class RunLoop:
    """A training loop's surroundings: run logs, episodes, progress bar, checkpoints, clock.

    Made just before the loop (the clock starts then); :meth:`close` saves ``last.pt`` and
    closes the logs, and :meth:`summary` is what ``train`` returns.
    """

    def __init__(
        self,
        run_dir: str,
        *,
        resumed: bool,
        num_envs: int,
        start_frames: int,
        checkpoint_every: int,
        save: Callable[[str, int], None],
        bar_total: int,
        desc: str,
        progress: bool,
    ) -> None:
        from tqdm import tqdm

        self.runlog = RunLog(run_dir, resume=resumed)
        self.episodes = Episodes(num_envs, self.runlog)
        self.checkpoints = CheckpointSchedule(run_dir, checkpoint_every, start_frames, save)
        self.start_frames = start_frames
        self.checkpoint: str | None = None
        self.start = time.perf_counter()
        self.bar = tqdm(
            total=bar_total, unit="frame", unit_scale=True, disable=not progress, desc=desc
        )

    def elapsed(self) -> float:
        """Seconds since the loop began."""
        return time.perf_counter() - self.start

    def close(self, frames: int) -> None:
        """Close the bar, save ``last.pt``, close the logs (also when the loop raised)."""
        self.bar.close()
        self.checkpoint = self.checkpoints.final(frames)
        self.runlog.close()

    def summary(self, frames: int, **more) -> dict:
        """What ``train`` returns: frames, episodes, reward, seconds, ``more``, checkpoint.

        The mean reward of the last 100 episodes (None before the first), frames/s of this run.
        """
        elapsed = self.elapsed()
        return {
            "frames": frames,
            "episodes": self.episodes.count,
            "reward_mean100": self.episodes.mean100(None),
            "seconds": round(elapsed, 3),
            "frames_per_s": round((frames - self.start_frames) / max(elapsed, 1e-9), 1),
            **more,
            "checkpoint": self.checkpoint,
        }


# -- checkpoints against envs ------------------------------------------------------------------


def same_actions(a, b) -> bool:
    """Whether two action sets are the same (a name, or combos as strings or lists)."""

    def norm(x):
        return x if isinstance(x, str) else [c if isinstance(c, str) else list(c) for c in x]

    return norm(a) == norm(b)


def check_compatible(
    path: str, trained: int, n_actions: int, trained_set=None, action_set=None
) -> None:
    """Refuse a checkpoint whose policy does not fit the env's actions.

    Args:
        path: the checkpoint (named in the message).
        trained: the actions its output layer has.
        n_actions: the actions of the env it is about to act on.
        trained_set: the action set it was trained with, where the checkpoint says.
        action_set: the action set of this run (compared with ``trained_set``).

    Raises:
        InvalidArgumentError: another action set, or another number of actions.
    """
    if trained_set is not None and not same_actions(trained_set, action_set):
        raise InvalidArgumentError(
            f"{path!r} was trained with the action set {trained_set!r}; this run uses "
            f"{action_set!r}: use the same action set (actions=...)"
        )
    if trained != n_actions:
        raise InvalidArgumentError(
            f"{path!r} was trained with {trained} actions; this env has {n_actions}: use the "
            "same action set (actions=...)"
        )


def n_actions_of(space) -> int:
    """The discrete actions of one env: of a ``Discrete`` or of a pool's ``MultiDiscrete``.

    Raises:
        InvalidArgumentError: a space of neither kind.
    """
    if hasattr(space, "nvec"):
        return int(np.asarray(space.nvec).flat[0])
    if hasattr(space, "n"):
        return int(space.n)
    raise InvalidArgumentError(
        f"Expected a discrete action space (Discrete or MultiDiscrete), got {space}"
    )


# -- playing and evaluating --------------------------------------------------------------------


def policy_parts(policy) -> tuple[Choose, Callable | None]:
    """``(act, observe)`` of a policy: a ``choose`` function, or an agent (``fastretro eval``'s).

    An agent has ``act(observations) -> actions`` and, if it keeps a memory (an LSTM's state),
    ``observe(rewards, terminated, truncated)``, told each step's outcome; ``observe`` is None
    for a policy without one.
    """
    return getattr(policy, "act", policy), getattr(policy, "observe", None)


def play_episodes(pool, policy, episodes: int, seed: int) -> list[float]:
    """Run ``policy`` on a pool until each env has played its share of ``episodes``; the rewards.

    ``policy``: a ``choose`` function or an agent (:func:`policy_parts`). Each of the pool's N
    envs counts its first ``ceil(episodes / N)`` or ``floor`` episodes (taking the first
    ``episodes`` to end would favour short ones); the rewards are in env order, and on a
    one-env pool in the order the episodes were played. torch's global generator is seeded
    with ``seed`` (a policy that samples draws from it).
    """
    torch.manual_seed(seed)
    act, observe = policy_parts(policy)
    n = pool.num_envs
    quota = np.full(n, episodes // n)
    quota[: episodes % n] += 1
    got: list[list[float]] = [[] for _ in range(n)]
    total = np.zeros(n)
    obs, _ = pool.reset(seed=seed)
    while any(len(g) < q for g, q in zip(got, quota)):
        obs, rewards, terminated, truncated, _ = pool.step(act(obs))
        if observe is not None:
            observe(rewards, terminated, truncated)
        total += rewards
        for i in np.flatnonzero(np.asarray(terminated) | np.asarray(truncated)):
            if len(got[i]) < quota[i]:
                got[i].append(float(total[i]))
            total[i] = 0.0
    return [reward for g in got for reward in g]


def play_on(pool, build: Callable[[object, object], object], episodes: int, seed: int):
    """:func:`play_episodes` with the policy ``build`` makes for the pool's spaces; closes it."""
    try:
        policy = build(pool.single_observation_space, pool.single_action_space)
        return play_episodes(pool, policy, episodes, seed)
    finally:
        pool.close()


class PolicyAgent:
    """A ``fastretro eval`` agent: ``act(observations) -> actions`` through a policy.

    ``policy``: a ``choose`` function or an agent (:func:`policy_parts`); the agent has
    ``observe`` where the policy has.
    """

    def __init__(self, policy) -> None:
        self.choose, observe = policy_parts(policy)
        if observe is not None:
            self.observe = observe

    def act(self, observations: np.ndarray) -> np.ndarray:
        """One action per env for a batch of observations."""
        return self.choose(observations)


def eval_factory(build: Callable[[object, object], object], env_options: dict) -> Callable:
    """A ``fastretro eval`` agent factory (:mod:`fastretro.contest.evaluate`).

    ``factory(observation_space, action_space)`` returns a :class:`PolicyAgent` acting with the
    policy (:func:`policy_parts`) ``build(observation_space, action_space)`` makes, which
    checks the spaces and loads the weights: after the pool has forked its workers;
    ``factory.env_options`` are the pool options the policy needs.
    """

    def factory(observation_space, action_space) -> PolicyAgent:
        return PolicyAgent(build(observation_space, action_space))

    factory.env_options = dict(env_options)
    return factory


# -- the training command ----------------------------------------------------------------------


def field_docs(config_cls: type) -> dict[str, str]:
    """Each config field's docstring (the string under it in the class body), for --help."""
    import ast
    import inspect

    docs: dict[str, str] = {}
    try:
        body = ast.parse(inspect.getsource(config_cls)).body[0].body
    except (OSError, TypeError):  # no source (a frozen build): flags without help
        return docs
    for node, after in zip(body, body[1:]):
        if isinstance(node, ast.AnnAssign) and isinstance(after, ast.Expr):
            if isinstance(after.value, ast.Constant) and isinstance(after.value.value, str):
                docs[node.target.id] = after.value.value
    return docs


#: Flag types by a field's annotation (``from __future__ import annotations``: strings).
_TYPES = {"int": int, "float": float, "float | None": float}


def config_parser(
    prog: str,
    description: str,
    config_cls: type,
    presets: dict[str, dict],
    run_dir: str,
    *,
    skip: Sequence[str] = (),
    more: Callable[[argparse.ArgumentParser], None] | None = None,
    types: dict[str, Callable[[str], object]] | None = None,
) -> argparse.ArgumentParser:
    """The training command's parser: the run's flags, then one flag per config field.

    ``--run-dir``, ``--preset``, then ``more(parser)``'s flags, ``--init-from``, ``--resume``,
    ``--quiet``, ``--json``, then :func:`config_flags`' ``--FIELD`` for each field of
    ``config_cls`` not in ``skip`` (``types``: parsers by field).
    """
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--run-dir", default=run_dir, help="output folder")
    parser.add_argument("--preset", choices=sorted(presets), help="hyper-parameter preset")
    if more is not None:
        more(parser)
    parser.add_argument("--init-from", metavar="CKPT", help="fine-tune from these weights")
    parser.add_argument("--resume", metavar="CKPT", help="continue the run of this checkpoint")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    config_flags(parser, config_cls, skip=skip, types=types)
    return parser


def config_flags(
    parser,
    config_cls: type,
    *,
    skip: Sequence[str] = (),
    types: dict[str, Callable[[str], object]] | None = None,
) -> None:
    """``--FIELD`` on ``parser`` (a parser or an argument group) for each field not in ``skip``.

    Bools become ``--x/--no-x``; every default is None, so that only what was given overrides
    the settings below it (:func:`flag_values`); the field's docstring is its help. A flag's
    type comes from the field's annotation (int, float, else str) unless ``types`` names a
    parser for the field.
    """
    docs = field_docs(config_cls)
    for f in dataclasses.fields(config_cls):
        if f.name in skip:
            continue
        flag = "--" + f.name.replace("_", "-")
        doc = " ".join(docs.get(f.name, "").split()).replace("%", "%%")
        if f.type in ("bool", bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=doc)
        else:
            kind = (types or {}).get(f.name) or _TYPES.get(str(f.type), str)
            parser.add_argument(flag, type=kind, default=None, help=doc)


def flag_values(args: argparse.Namespace, config_cls: type, skip: Sequence[str] = ()) -> dict:
    """The config fields whose flag (:func:`config_flags`) was given, by name."""
    return {
        f.name: getattr(args, f.name)
        for f in dataclasses.fields(config_cls)
        if f.name not in skip and getattr(args, f.name, None) is not None
    }


def config_values(
    args: argparse.Namespace, config_cls: type, presets: dict[str, dict], skip: Sequence[str] = ()
) -> dict:
    """The preset's values (``--preset``), overridden by every field flag given."""
    values = dict(presets[args.preset]) if args.preset else {}
    values.update(flag_values(args, config_cls, skip))
    return values


def _parse_level(text: str) -> tuple[str, str]:
    game, sep, state = text.partition(":")
    if not sep or not game or not state:
        raise argparse.ArgumentTypeError(f"Expected GAME:STATE, got {text!r}")
    return game, state


def level_flags(parser: argparse.ArgumentParser) -> None:
    """``--game``, ``--state``, ``--level GAME:STATE`` (repeated), ``--contest-training-levels``."""
    from fastretro import DEFAULT_GAME

    parser.add_argument("--game", default=DEFAULT_GAME)
    parser.add_argument("--state", default=None)
    parser.add_argument(
        "--level",
        action="append",
        type=_parse_level,
        default=[],
        metavar="GAME:STATE",
        help="joint training: repeat for each level",
    )
    parser.add_argument(
        "--contest-training-levels",
        action="store_true",
        help="joint training on the contest's training levels whose ROM is present",
    )


def levels_of(parser: argparse.ArgumentParser, args: argparse.Namespace) -> list[tuple]:
    """The (game, state) levels :func:`level_flags`' flags name; the parser's error if none."""
    levels = list(args.level)
    if args.contest_training_levels:
        from fastretro import contest

        levels += [(lv.game, lv.state) for lv in contest.playable(contest.training_levels())]
        if not levels:
            parser.error(
                "no contest training level has its ROM imported (python -m stable_retro.import DIR)"
            )
    return levels


def summary_line(summary: dict, also: str = "") -> str:
    """A training summary in one line; ``also`` goes after the episodes (ends with ", ")."""
    return (
        f"{summary['frames']:,} frames in {summary['seconds']:.0f} s "
        f"({summary['frames_per_s']:,.0f} frames/s), {summary['episodes']} episodes, "
        f"{also}mean reward (last 100) {summary['reward_mean100']}; "
        f"checkpoint {summary['checkpoint']}"
    )


def run_training(
    parser: argparse.ArgumentParser,
    args: argparse.Namespace,
    make_config: Callable[[], object],
    train: Callable,
    also: Callable[[dict], str] | None = None,
) -> int:
    """Build the config, train, print the summary (JSON with ``--json``).

    The summary's line is :func:`summary_line`'s, with ``also(summary)`` in it.

    A bad value or a refused checkpoint is the parser's error (one line, exit 2).
    """
    try:
        cfg = make_config()
        summary = train(
            cfg, args.run_dir, resume=args.resume, init_from=args.init_from, progress=not args.quiet
        )
    except InvalidArgumentError as exc:
        parser.error(str(exc))
    print(
        json.dumps(summary) if args.json else summary_line(summary, also(summary) if also else "")
    )
    return 0
