"""The fastretro command: help, unknown commands, games, cleanup, the agent registry."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from conftest import GAME

from fastretro.agents import registry
from fastretro.errors import InvalidArgumentError
from fastretro.runtime import shm
from fastretro.tools import cli


def test_help_lists_commands(capsys):
    assert cli.main([]) == 0
    out = capsys.readouterr().out
    for command in ("bench", "games", "cleanup"):
        assert command in out


def test_unknown_command_exits_2(capsys):
    assert cli.main(["frobnicate"]) == 2
    assert "unknown command 'frobnicate'" in capsys.readouterr().err


def test_games_lists_the_shipped_rom_and_the_import_hint(capsys):
    assert cli.main(["games", "--states"]) == 0
    out = capsys.readouterr().out
    assert f"rom  {GAME}  states: Level1" in out
    assert "python -m stable_retro.import DIR" in out


def test_cleanup_removes_segments_of_dead_owners_only(capsys):
    dead_pid = 2**22 + 12345  # above the default pid_max: no such process
    orphan = f"{shm.PREFIX}{dead_pid}_deadbeef"
    mine = f"{shm.PREFIX}{os.getpid()}_cafef00d"
    for name in (orphan, mine):
        with open(f"/dev/shm/{name}", "wb") as f:
            f.write(b"\0" * 64)
    try:
        assert cli.main(["cleanup"]) == 0
        assert f"removed /dev/shm/{orphan}" in capsys.readouterr().out
        assert orphan not in shm.list_segments()
        assert mine in shm.list_segments()
    finally:
        for name in (orphan, mine):
            if os.path.exists(f"/dev/shm/{name}"):
                os.unlink(f"/dev/shm/{name}")


def test_every_agent_is_registered_and_each_loader_resolves():
    assert list(registry.AGENTS) == ["jerk", "ppo2", "rainbow", "world_models"]
    for agent in registry.AGENTS.values():
        assert cli.COMMANDS[agent.command] == (agent.run_main, agent.help)
        assert callable(agent.main()) and callable(agent.eval_factory())
        assert isinstance(agent.config(), type)
    for name in ("ppo2", "rainbow"):
        agent = registry.get(name)
        assert callable(agent.train()) and callable(agent.play()) and callable(agent.pool())
        assert agent.plays_checkpoints and agent.eval_takes_path
    assert callable(registry.get("jerk").pool())
    assert callable(registry.get("world_models").play())
    assert registry.get("ppo") is registry.get("ppo2")  # the command and profiler name
    with pytest.raises(InvalidArgumentError, match="Expected an agent among"):
        registry.get("dqn")
    with pytest.raises(InvalidArgumentError, match="The jerk agent has no train"):
        registry.get("jerk").train()


def test_listing_the_commands_imports_no_agent_and_common_imports_none():
    code = (
        "import sys; from fastretro.tools import cli; cli.main([]); "
        "assert 'torch' not in sys.modules, 'torch'; "
        "import fastretro.agents.common; "
        "assert not {'fastretro.agents.ppo2', 'fastretro.agents.rainbow'} & set(sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
