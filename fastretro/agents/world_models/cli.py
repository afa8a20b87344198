"""``fastretro world-models collect|vae|mdn|evolve|play``: one subcommand per stage.

The settings flags are :func:`fastretro.agents.harness.config_flags`' (one per config field,
its docstring as help); the stages' summaries, unlike a training run's, each have their own
line (:func:`describe_summary`).
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from fastretro.agents import harness
from fastretro.agents.world_models.agent import play
from fastretro.agents.world_models.config import PRESETS, WorldModelsConfig, resolve_config
from fastretro.agents.world_models.evolution import evolve
from fastretro.agents.world_models.mdn_rnn import train_mdn
from fastretro.agents.world_models.rollouts import collect
from fastretro.agents.world_models.vae import train_vae
from fastretro.errors import InvalidArgumentError

_STAGES = ("collect", "vae", "mdn", "evolve", "play")


def _parse_actions(text: str):
    """``--actions``: a name (``auto``, ``sonic7``) or a JSON list of combos."""
    if text.startswith("["):
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise argparse.ArgumentTypeError(
                f"Expected a JSON list of combos, got {text!r}"
            ) from exc
    return text


def _add_settings(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run-dir", default="runs/world_models", help="the run folder")
    parser.add_argument("--preset", choices=sorted(PRESETS), help="settings per game")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    # No --resume/--init-from (harness.config_parser's): each stage continues from the run
    # folder's own files, and the settings default to its config.json, not to a preset.
    group = parser.add_argument_group("settings (default: the run folder's config.json)")
    harness.config_flags(group, WorldModelsConfig, types={"actions": _parse_actions})


def main(argv: list[str] | None = None) -> int:
    """``fastretro world-models collect|vae|mdn|evolve|play``."""
    parser = argparse.ArgumentParser(
        prog="fastretro world-models",
        description="World Models (Ha & Schmidhuber 2018) on the pool: collect random rollouts, "
        "train the VAE (V) and the MDN-RNN (M), evolve the controller (C) with CMA-ES, play it. "
        "Every stage works in --run-dir.",
    )
    sub = parser.add_subparsers(dest="stage", required=True)
    helps = {
        "collect": "random rollouts into shards (continues an interrupted collection)",
        "vae": "train the VAE on the shards; writes reconstructions.png",
        "mdn": "train the MDN-RNN on the VAE's latents; writes dream.gif",
        "evolve": "evolve the controller with CMA-ES on an async pool; writes evolution.png",
        "play": "run the evolved controller, optionally recording .bk2 movies",
    }
    subs = {}
    for stage in _STAGES:
        p = sub.add_parser(stage, help=helps[stage], description=helps[stage])
        _add_settings(p)
        subs[stage] = p
    subs["play"].add_argument("--episodes", type=int, default=1)
    subs["play"].add_argument("--envs", type=int, default=1, help="envs to spread them over")
    subs["play"].add_argument("--record", metavar="DIR", help="write one .bk2 per episode here")
    subs["play"].add_argument("--which", choices=("best", "mean"), default="best")
    subs["play"].add_argument("--play-seed", type=int, default=0)
    args = parser.parse_args(argv)
    p = subs[args.stage]
    overrides = harness.flag_values(args, WorldModelsConfig)
    try:
        cfg = resolve_config(args.run_dir, args.preset, **overrides)
        progress = not args.quiet
        if args.stage == "collect":
            summary = collect(cfg, args.run_dir, progress=progress)
        elif args.stage == "vae":
            summary = train_vae(cfg, args.run_dir, progress=progress)
        elif args.stage == "mdn":
            summary = train_mdn(cfg, args.run_dir, progress=progress)
        elif args.stage == "evolve":
            summary = evolve(cfg, args.run_dir, progress=progress)
        else:
            returns = play(
                args.run_dir,
                episodes=args.episodes,
                num_envs=args.envs,
                record=args.record,
                seed=args.play_seed,
                which=args.which,
                cfg=cfg,
            )
            summary = {"stage": "play", "returns": returns, "mean_return": float(np.mean(returns))}
    except InvalidArgumentError as exc:
        p.error(str(exc))
    if args.json:
        print(json.dumps(summary))
    else:
        print(describe_summary(summary))
    return 0


def describe_summary(s: dict) -> str:
    """One line per stage summary, for humans."""
    stage = s["stage"]
    if stage == "collect":
        if not s["episodes_added"]:
            return f"collect: the shards already hold {s['episodes_before']} episodes"
        return (
            f"collect: {s['episodes_added']} episodes, {s['frames']:,} frames in "
            f"{s['seconds']:.0f} s (pool {s['pool_frames_per_s']:,.0f} frames/s)"
        )
    if stage == "vae":
        return (
            f"vae: {s['frames_trained']:,} frames trained ({s['frames_in_data']:,} in the data) "
            f"in {s['seconds']:.0f} s; {s['picture']}"
        )
    if stage == "mdn":
        return (
            f"mdn: {s['epochs']} epochs over {s['steps_in_data']:,} steps in {s['seconds']:.0f} s; "
            f"{s['picture']}"
        )
    if stage == "evolve":
        last = s["last"] or {}
        return (
            f"evolve: {s['generations_run']} generations in {s['seconds']:.0f} s (pool "
            f"{s['pool_frames_per_s'] or 0:,.0f} frames/s), best {last.get('return/best')}, "
            f"mean {last.get('return/mean')}, best ever {s['best_fitness']}; {s['picture']}"
        )
    lines = [f"episode {i}: return {r:g}" for i, r in enumerate(s["returns"])]
    lines.append(f"mean return {s['mean_return']:g} over {len(s['returns'])} episode(s)")
    return "\n".join(lines)
