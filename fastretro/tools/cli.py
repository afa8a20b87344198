"""The ``fastretro`` command: bench (the main job) and the tools around it, one subcommand each."""

from __future__ import annotations

import argparse
import sys

from fastretro.agents import registry


def _games(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="fastretro games", description="List stable-retro's games and which ROMs are present."
    )
    parser.add_argument("--all", action="store_true", help="also list games whose ROM is missing")
    parser.add_argument("--states", action="store_true", help="list each game's states")
    args = parser.parse_args(argv)
    from fastretro.runtime.games import known_games, rom_imported, states

    present = 0
    for game in known_games():
        has_rom = rom_imported(game)
        present += has_rom
        if has_rom or args.all:
            line = f"{'rom ' if has_rom else '    '} {game}"
            if args.states:
                line += f"  states: {', '.join(states(game))}"
            print(line)
    print(
        f"\n{present} of {len(known_games())} integrated games have a ROM. "
        "Import your own with `python -m stable_retro.import DIR`."
    )
    return 0


def _cleanup(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="fastretro cleanup",
        description="Remove shared memory left by fastretro processes that no longer exist.",
    )
    parser.parse_args(argv)
    from fastretro.runtime.shm import cleanup_orphans, list_segments

    skipped: list[str] = []
    removed = cleanup_orphans(skipped)
    for name in removed:
        print(f"removed /dev/shm/{name}")
    for name in skipped:
        print(f"skipped /dev/shm/{name}: permission denied (another user's segment?)")
    skipped_note = f", {len(skipped)} skipped" if skipped else ""
    in_use = len(list_segments()) - len(skipped)
    print(f"{len(removed)} orphaned segment(s) removed{skipped_note}; {in_use} in use.")
    return 0


def _bench(argv: list[str]) -> int:
    from fastretro.tools import bench

    return bench.main(argv)


def _eval(argv: list[str]) -> int:
    from fastretro.contest import evaluate

    return evaluate.main(argv)


def _replay(argv: list[str]) -> int:
    from fastretro.contest import movies

    return movies.main(argv)


def _render(argv: list[str]) -> int:
    from fastretro.contest import movies

    return movies.render_main(argv)


def _play(argv: list[str]) -> int:
    return registry.play_main(argv)


def _convert_checkpoint(argv: list[str]) -> int:
    from fastretro.tools import convert_checkpoint

    return convert_checkpoint.main(argv)


def _roms(argv: list[str]) -> int:
    from fastretro.tools import roms

    return roms.main(argv)


def _plot(argv: list[str]) -> int:
    from fastretro.tools import plot

    return plot.main(argv)


def _profile(argv: list[str]) -> int:
    from fastretro.tools import profiler

    return profiler.main(argv)


COMMANDS = {
    "bench": (_bench, "measure emulator frames/s against the peers and the physical limit"),
    "games": (_games, "list integrated games, ROMs present, and how to import ROMs"),
    # The agents' commands, from the registry (their modules load when one runs).
    **{agent.command: (agent.run_main, agent.help) for agent in registry.AGENTS.values()},
    "play": (_play, "run a trained PPO2 or Rainbow checkpoint, optionally recording .bk2"),
    "convert-checkpoint": (
        _convert_checkpoint,
        "rewrite a trusted old-format (pickle) checkpoint in the safe format",
    ),
    "plot": (_plot, "draw a run's learning curve (monitor.csv) to PNG"),
    "profile": (_profile, "run an agent for a fixed time; show where the wall-clock went"),
    "eval": (_eval, "evaluate an agent under the Retro Contest's rules; write a results folder"),
    "replay": (_replay, "replay .bk2 movies headless and print their reward and length"),
    "render": (_render, "render .bk2 movies to mp4 or gif (no display, no system ffmpeg)"),
    "roms": (_roms, "import into stable-retro the Atari 2600 ROMs that ale-py ships"),
    "cleanup": (_cleanup, "remove shared memory left behind by killed fastretro processes"),
}


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``fastretro`` console script."""
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        width = max(map(len, COMMANDS))
        lines = [f"  {name:<{width}}  {help_}" for name, (_, help_) in COMMANDS.items()]
        print("usage: fastretro COMMAND [options]\n\ncommands:\n" + "\n".join(lines))
        if argv and argv[0] not in ("-h", "--help"):
            print(f"\nfastretro: unknown command {argv[0]!r}", file=sys.stderr)
            return 2
        return 0
    func, _ = COMMANDS[argv[0]]
    return func(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
