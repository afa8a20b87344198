"""Checkpoints open without running code: hostile files are refused by every command, old ones
name their converter, wrong contents fail clearly, and CMA-ES survives its plain form."""

from __future__ import annotations

import os
import pickle
import re
import subprocess
import sys

import gymnasium
import numpy as np
import pytest
from conftest import GAME

torch = pytest.importorskip("torch")

from fastretro.agents import checkpoints, cma_state, ppo2, rainbow  # noqa: E402
from fastretro.agents import world_models as wm  # noqa: E402
from fastretro.errors import InvalidArgumentError  # noqa: E402
from fastretro.tools import cli, convert_checkpoint  # noqa: E402

OLD_FORMAT = (
    "is a checkpoint in the old format (a full Python pickle): opening it could run any code"
)


class Hostile:
    """Unpickling this calls ``open(marker, "w")``: the file appears if the pickle runs code."""

    def __init__(self, marker) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def hostile_checkpoint(path, marker, agent: str) -> str:
    """A checkpoint that looks like ``agent``'s and runs code when unpickled in full."""
    torch.save(
        {"agent": agent, "config": {}, "frames": 0, "model": {}, "es": Hostile(marker)}, path
    )
    return str(path)


@pytest.fixture
def hostile(tmp_path):
    marker = tmp_path / "marker"
    yield lambda name, agent="ppo2": hostile_checkpoint(tmp_path / name, marker, agent)
    assert not marker.exists(), "opening the checkpoint ran its code"


def hostile_run_folder(tmp_path, hostile) -> str:
    """A World Models run folder whose controller.pt runs code when unpickled in full."""
    run = tmp_path / "run"
    run.mkdir()
    os.replace(hostile("c.pt", wm.CONTROLLER_TAG), run / "controller.pt")
    return str(run)


def test_the_hostile_file_runs_code_when_opened_as_before(tmp_path):
    # What the tests below guard against: the old loader (weights_only=False) runs it.
    marker = tmp_path / "marker"
    path = hostile_checkpoint(tmp_path / "evil.pt", marker, "ppo2")
    torch.load(path, weights_only=False)
    assert marker.exists()


# -- every door refuses it, before any emulator starts --------------------------------------


def test_play_refuses_a_hostile_checkpoint(hostile, capsys):
    path = hostile("evil.pt")
    with pytest.raises(SystemExit) as exit_:
        cli.main(["play", path, "--episodes", "1"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert OLD_FORMAT in err and f"fastretro convert-checkpoint {path} NEW.pt" in err


@pytest.mark.parametrize("agent", ["ppo2", "rainbow", "world_models"])
def test_eval_refuses_a_hostile_checkpoint(agent, hostile, tmp_path, capsys):
    path = hostile_run_folder(tmp_path, hostile) if agent == "world_models" else hostile("e.pt")
    argv = ["eval", "--agent", f"{agent}:{path}", "--results", str(tmp_path / "results")]
    assert cli.main([*argv, "--timesteps", "10", "--no-progress"]) == 2
    assert OLD_FORMAT in capsys.readouterr().err
    assert not (tmp_path / "results").exists()


@pytest.mark.parametrize("command", ["ppo", "rainbow"])
@pytest.mark.parametrize("flag", ["--resume", "--init-from"])
def test_training_refuses_a_hostile_checkpoint(command, flag, hostile, tmp_path, capsys):
    agent = "ppo2" if command == "ppo" else "rainbow"
    path = hostile("evil.pt", agent)
    with pytest.raises(SystemExit) as exit_:
        cli.main([command, "--run-dir", str(tmp_path / "run"), flag, path, "--quiet"])
    assert exit_.value.code == 2
    assert OLD_FORMAT in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("stage", ["play", "evolve"])
def test_a_world_models_run_folder_with_a_hostile_controller_is_refused(
    stage, hostile, tmp_path, capsys
):
    run = hostile_run_folder(tmp_path, hostile)
    with pytest.raises(SystemExit) as exit_:
        cli.main(["world-models", stage, "--run-dir", run, "--quiet"])
    assert exit_.value.code == 2
    assert OLD_FORMAT in capsys.readouterr().err


@pytest.mark.parametrize("name", ["vae.pt", "mdn.pt"])
def test_hostile_world_models_vae_and_mdn_are_refused(name, hostile):
    path = hostile(name, wm.VAE_TAG if name == "vae.pt" else wm.MDN_TAG)
    cfg = wm.resolve_config(None)
    with pytest.raises(InvalidArgumentError, match=re.escape(OLD_FORMAT)):
        wm.load_vae(path, cfg) if name == "vae.pt" else wm.load_mdn(path, cfg, 10)


def test_the_play_command_refuses_in_a_fresh_process(hostile):
    path = hostile("evil.pt")
    done = subprocess.run(
        [sys.executable, "-m", "fastretro", "play", path],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 2 and OLD_FORMAT in done.stderr


# -- old checkpoints: the error names the converter, the converter works ---------------------


def _old_controller(path, cfg) -> tuple:
    """A controller.pt as the code before the safe format wrote it: numpy and a pickled ES."""
    import cma

    size = wm.controller_size(cfg.z_size, cfg.rnn_hidden, 10)
    es = cma.CMAEvolutionStrategy(np.zeros(size), 0.1, {"popsize": 3, "seed": 2, "verbose": -9})
    for _ in range(2):
        xs = es.ask()
        es.tell(xs, [float(np.sum(x**2)) for x in xs])
    rng_state = np.random.get_state()
    torch.save(
        {
            "agent": wm.CONTROLLER_TAG,
            "config": {"game": GAME},
            "frames": 123,
            "generation": 2,
            "best_params": np.ones(size),
            "best_fitness": np.float64(1.5),
            "best_generation": 1,
            "mean_params": np.asarray(es.mean),
            "action_set": cfg.resolved_actions(),
            "n_actions": 10,
            "z_size": cfg.z_size,
            "hidden": cfg.rnn_hidden,
            "es": pickle.dumps(es),
            "numpy_random_state": rng_state,
            "history": [{"generation": np.int64(2), "return/best": np.float64(1.5)}],
        },
        path,
    )
    return es, rng_state


def test_an_old_checkpoint_names_the_convert_command_and_converts(tmp_path, capsys):
    pytest.importorskip("cma")
    cfg = wm.resolve_config(None, "airstriker")
    old, new = str(tmp_path / "old.pt"), str(tmp_path / "new.pt")
    es, rng_state = _old_controller(old, cfg)
    message = (
        f"{old!r} is a checkpoint in the old format (a full Python pickle): opening it could "
        "run any code it holds, so fastretro does not. If you trust where it came from, "
        f"convert it once with: fastretro convert-checkpoint {old} NEW.pt"
    )
    with pytest.raises(InvalidArgumentError, match=re.escape(message)):
        wm.load_controller(old, cfg)

    assert cli.main(["convert-checkpoint", old, new]) == 0
    assert "a world_models_controller checkpoint in the safe format" in capsys.readouterr().out
    ckpt = wm.load_controller(new, cfg)
    assert ckpt["format"] == checkpoints.FORMAT and ckpt["frames"] == 123
    np.testing.assert_array_equal(ckpt["best_params"], np.ones(len(es.mean)))
    assert ckpt["history"] == [{"generation": 2, "return/best": 1.5}]
    # The converted ES goes on exactly as the pickled one would have.
    resumed = cma_state.es_from_state(ckpt["es"], new)
    np.random.set_state(rng_state)
    expected = es.ask()
    np.random.set_state(rng_state)
    np.testing.assert_array_equal(np.array(resumed.ask()), np.array(expected))


def test_an_old_ppo2_checkpoint_with_numpy_in_it_converts(tmp_path):
    old, new = str(tmp_path / "old.pt"), str(tmp_path / "new.pt")
    model = ppo2.ActorCritic("nature", (4, 84, 84), 10)
    torch.save(
        {"agent": "ppo2", "config": {}, "frames": 7, "model": model.state_dict(), "x": np.ones(2)},
        old,
    )
    with pytest.raises(InvalidArgumentError, match=re.escape(OLD_FORMAT)):
        ppo2.load_checkpoint(old)
    assert convert_checkpoint.convert_checkpoint(old, new) == "ppo2"
    ckpt = ppo2.load_checkpoint(new)
    assert ckpt["frames"] == 7 and torch.equal(ckpt["x"], torch.ones(2, dtype=torch.float64))


def test_convert_refuses_a_file_that_is_not_a_checkpoint(tmp_path):
    bad = tmp_path / "bad.pt"
    torch.save([1, 2], bad)
    with pytest.raises(InvalidArgumentError, match=re.escape(f"{str(bad)!r} is not a fastretro")):
        convert_checkpoint.convert_checkpoint(str(bad), str(tmp_path / "new.pt"))


# -- contents that load but are wrong --------------------------------------------------------


def test_wrong_contents_are_named(tmp_path):
    path = str(tmp_path / "c.pt")
    checkpoints.save_checkpoint(path, "ppo2", {}, 0, model=[1, 2])
    message = (
        f"{path!r} is not a fastretro PPO2 checkpoint: expected 'model' to be a dict, got list"
    )
    with pytest.raises(InvalidArgumentError, match=re.escape(message)):
        ppo2.load_checkpoint(path)
    checkpoints.save_checkpoint(path, "rainbow", {}, 0)
    message = f"{path!r} is not a fastretro Rainbow checkpoint: it has no 'model'"
    with pytest.raises(InvalidArgumentError, match=re.escape(message)):
        rainbow.make_eval_agent(path)
    checkpoints.save_checkpoint(
        path, "ppo2", {"levels": 3}, 0, model={"policy.weight": torch.ones(2, 2)}
    )
    message = f"{path!r} is not a fastretro PPO2 checkpoint: its 'config' is not a PPO2Config's"
    with pytest.raises(InvalidArgumentError, match=re.escape(message)):
        ppo2.load_checkpoint(path)
    torch.save([1, 2], path)
    message = f"{path!r} is not a fastretro PPO2 checkpoint: it holds a list, not a dict"
    with pytest.raises(InvalidArgumentError, match=re.escape(message)):
        ppo2.load_checkpoint(path)


def test_a_state_dict_that_does_not_fit_the_network_is_named(tmp_path):
    path = str(tmp_path / "c.pt")
    state = ppo2.ActorCritic("nature", (4, 84, 84), 10).state_dict()
    state["value.weight"] = torch.zeros(1, 3)
    checkpoints.save_checkpoint(path, "ppo2", {}, 0, model=state)
    factory = ppo2.make_eval_agent(path)
    message = (
        f"{path!r} does not fit this PPO2 network: its 'model' does not load (Error(s) in "
        "loading state_dict for ActorCritic: size mismatch for value.weight"
    )
    with pytest.raises(InvalidArgumentError, match=re.escape(message)):
        factory(gymnasium.spaces.Box(0, 255, (4, 84, 84), np.uint8), gymnasium.spaces.Discrete(10))


def test_an_optimizer_state_that_does_not_fit_is_named():
    optimizer = torch.optim.Adam(torch.nn.Linear(2, 2).parameters())
    ckpt = {"optimizer": {"state": {}, "param_groups": [{"params": [0]}]}}
    message = "'c.pt' does not fit this optimizer: its 'optimizer' does not load (loaded state"
    with pytest.raises(InvalidArgumentError, match=re.escape(message)):
        checkpoints.load_state(optimizer, ckpt, "optimizer", "c.pt", "optimizer")


@pytest.mark.parametrize(
    "change, message",
    [
        ({"x0": [0.0]}, "its 'x0' is missing or of another type"),
        ({"options": {"popsize": "__import__('os')"}}, "its 'options' holds more than numbers"),
        ({"parts": {"sm": {"__class__": 1}}}, "it names a special attribute"),
    ],
)
def test_a_cma_es_state_with_wrong_contents_is_refused(change, message):
    pytest.importorskip("cma")
    import cma

    es = cma.CMAEvolutionStrategy(np.zeros(3), 0.5, {"popsize": 3, "seed": 1, "verbose": -9})
    state = {**cma_state.es_state(es), **change}
    with pytest.raises(InvalidArgumentError, match=re.escape(message)):
        cma_state.es_from_state(state, "c.pt")


# -- CMA-ES in its plain form ----------------------------------------------------------------


@pytest.mark.parametrize("diagonal", [True, False])
def test_cma_es_rebuilt_from_its_plain_state_asks_the_same_candidates(diagonal, tmp_path):
    cma = pytest.importorskip("cma")
    options = {"popsize": 4, "seed": 3, "CMA_diagonal": diagonal, "verbose": -9}
    es = cma.CMAEvolutionStrategy(np.zeros(6), 0.3, options)

    def generation(es) -> np.ndarray:
        xs = es.ask()
        es.tell(xs, [float(np.sum((x - 1) ** 2)) for x in xs])
        return np.array(xs)

    for _ in range(4):
        generation(es)
    torch.save(cma_state.es_state(es), tmp_path / "es.pt")
    original = [generation(es) for _ in range(5)]
    resumed = cma_state.es_from_state(torch.load(tmp_path / "es.pt", weights_only=True), "es.pt")
    np.testing.assert_array_equal([generation(resumed) for _ in range(5)], original)
    assert resumed.sigma == es.sigma and resumed.countiter == es.countiter


# -- the one unsafe load ---------------------------------------------------------------------


def test_only_the_converter_opens_a_file_that_can_run_code():
    package = os.path.dirname(os.path.dirname(os.path.abspath(checkpoints.__file__)))
    pattern = re.compile(r"weights_only *= *False|pickle\.loads?\(")
    found = []
    # Where a file a user names is opened (runtime/ pickles only its own exceptions in transit).
    folders = [os.path.join(package, name) for name in ("agents", "contest", "tools")]
    for folder, _, files in (walk for top in folders for walk in os.walk(top)):
        for name in sorted(f for f in files if f.endswith(".py")):
            path = os.path.join(folder, name)
            with open(path) as f:
                found += [os.path.relpath(path, package) for line in f if pattern.search(line)]
    assert found == ["tools/convert_checkpoint.py", "tools/convert_checkpoint.py"]
