"""PPO2: GAE against the plain-Python reference, tiny end-to-end runs, checkpoints, CLI."""

from __future__ import annotations

import csv
import json
import re
import subprocess
import sys

import naive
import numpy as np
import pytest
from conftest import GAME

torch = pytest.importorskip("torch")

from fastretro import InvalidArgumentError  # noqa: E402
from fastretro.agents import ppo2  # noqa: E402
from fastretro.agents.ppo2 import PPO2Config, compute_gae, load_checkpoint, train  # noqa: E402


def tiny(**kw) -> PPO2Config:
    values = dict(num_envs=2, n_steps=16, n_minibatches=2, n_epochs=1, total_frames=2 * 16 * 4 * 2)
    values.update(kw)
    return PPO2Config(**values)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gae_matches_the_plain_python_reference(seed):
    rng = np.random.default_rng(seed)
    steps, envs = 23, 5
    rewards = rng.normal(size=(steps, envs))
    values = rng.normal(size=(steps, envs))
    dones = (rng.random((steps, envs)) < 0.15).astype(float)
    last_value = rng.normal(size=envs)
    last_done = (rng.random(envs) < 0.3).astype(float)
    adv, ret = compute_gae(
        *(
            torch.tensor(a, dtype=torch.float64)
            for a in (rewards, values, dones, last_value, last_done)
        ),
        gamma=0.99,
        lam=0.95,
    )
    ref_adv, ref_ret = naive.gae(
        rewards.tolist(),
        values.tolist(),
        dones.tolist(),
        last_value.tolist(),
        last_done.tolist(),
        0.99,
        0.95,
    )
    np.testing.assert_allclose(adv.numpy(), ref_adv, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(ret.numpy(), ref_ret, rtol=1e-10, atol=1e-10)


def test_gae_does_not_bootstrap_across_an_episode_start():
    # One env, reward 1 each step, value 10 everywhere; step 2 starts a new episode.
    rewards = torch.ones(4, 1)
    values = torch.full((4, 1), 10.0)
    dones = torch.tensor([[0.0], [0.0], [1.0], [0.0]])
    adv, _ = compute_gae(
        rewards, values, dones, torch.tensor([10.0]), torch.tensor([0.0]), gamma=1.0, lam=1.0
    )
    # Step 1 is the last of its episode: delta = 1 + 0 - 10.
    assert adv[1, 0].item() == pytest.approx(-9.0)
    assert adv[3, 0].item() == pytest.approx(1.0)


@pytest.mark.parametrize("network", ["nature", "impala"])
def test_networks_give_logits_and_values(network):
    model = ppo2.ActorCritic(network, (4, 84, 84), 7)
    logits, value = model(torch.zeros(3, 4, 84, 84, dtype=torch.uint8))
    assert logits.shape == (3, 7) and value.shape == (3,)


def test_networks_see_pixels_scaled_to_the_unit_range():
    model = ppo2.ActorCritic("nature", (4, 84, 84), 7)
    obs = torch.randint(0, 256, (3, 4, 84, 84), dtype=torch.uint8, generator=torch.manual_seed(0))
    logits, value = model(obs)
    hidden = model.body((obs.double() / 255.0).float())
    torch.testing.assert_close(logits, model.policy(hidden))
    torch.testing.assert_close(value, model.value(hidden).squeeze(-1))


def test_tiny_run_writes_checkpoint_then_resumes_then_fine_tunes(tmp_path):
    run = tmp_path / "run"
    first = train(tiny(), str(run), progress=False)
    assert first["frames"] == 256
    ckpt = load_checkpoint(first["checkpoint"])
    assert ckpt["frames"] == 256 and ckpt["config"]["n_steps"] == 16
    assert ckpt["optimizer"]["state"], "the optimizer state must be saved"
    with open(run / "progress.csv") as f:
        assert len(list(csv.DictReader(f))) == 2
    assert (run / "monitor.csv").read_text().splitlines()[1] == "r,l,t,frames"
    assert any((run / "tb").iterdir()), "TensorBoard scalars are written"

    # Resume: the step count continues from the checkpoint, the progress log is appended.
    second = train(tiny(total_frames=512), str(run), resume=first["checkpoint"], progress=False)
    assert second["frames"] == 512
    with open(run / "progress.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["frames"]) for r in rows] == [128, 256, 384, 512]
    resumed = load_checkpoint(second["checkpoint"])
    assert resumed["frames"] == 512

    # Fine-tune: weights from the checkpoint, new optimizer and learning rate, steps from 0.
    tune_dir = tmp_path / "tune"
    tuned = train(
        tiny(learning_rate=1e-5),
        str(tune_dir),
        init_from=second["checkpoint"],
        progress=False,
        max_seconds=0.0,
    )
    assert tuned["frames"] == 0
    out = load_checkpoint(tuned["checkpoint"])
    assert out["config"]["learning_rate"] == 1e-5
    for name, weights in resumed["model"].items():
        assert torch.equal(out["model"][name], weights), name


def test_overlap_mode_trains_and_counts_the_same_frames(tmp_path):
    result = train(tiny(num_envs=4, overlap=True), str(tmp_path), progress=False)
    assert result["frames"] == 256  # one update of 4 envs x 16 steps x 4 frames
    with open(tmp_path / "progress.csv") as f:
        rows = list(csv.DictReader(f))
    assert all(np.isfinite(float(r["loss/value"])) for r in rows)


@pytest.mark.parametrize("overlap", [False, True])
def test_acting_gets_every_core_in_lock_step_and_one_less_with_overlap(tmp_path, overlap):
    from fastretro.runtime.stats import available_cores

    seen = []
    train(
        tiny(num_envs=4, overlap=overlap),
        str(tmp_path),
        progress=False,
        on_loop=lambda phase, pools: seen.append(torch.get_num_threads()),
    )
    cores = available_cores()
    assert seen[0] == (max(1, cores - 1) if overlap else cores)


@pytest.mark.parametrize(
    "env, expected",
    [
        ({}, "10000"),  # a short spin: the default
        ({"OMP_WAIT_POLICY": "PASSIVE"}, None),  # the user's policy wins
        ({"GOMP_SPINCOUNT": "5"}, "5"),
    ],
)
def test_openmp_spin_is_set_before_torch_loads(env, expected):
    import os

    clean = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    code = (
        "import os, sys\n"
        "import fastretro.agents.ppo2\n"
        "assert 'torch' in sys.modules\n"
        "print(os.environ.get('GOMP_SPINCOUNT'))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env={**clean, **env}, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == str(expected)


def test_episodes_reach_monitor_csv_in_sb3_format(tmp_path):
    pd = pytest.importorskip("pandas")
    from stable_baselines3.common.monitor import load_results

    cfg = tiny(max_episode_steps=10, total_frames=2 * 16 * 4)
    train(cfg, str(tmp_path), progress=False)
    df = load_results(str(tmp_path))
    assert len(df) >= 2 and set(df.columns) >= {"r", "l", "t"}
    assert (df["l"] == 10).all()
    assert isinstance(df, pd.DataFrame)


def test_play_runs_a_checkpoint_and_records_movies(tmp_path):
    result = train(tiny(max_episode_steps=8), str(tmp_path / "run"), progress=False)
    movies = tmp_path / "movies"
    rewards = ppo2.play(result["checkpoint"], episodes=2, record=str(movies))
    assert len(rewards) == 2
    assert len(list(movies.rglob("*.bk2"))) >= 2


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        (
            dict(network="resnet"),
            "Expected network to be one of ['impala', 'nature'], got 'resnet'",
        ),
        (dict(num_envs=3, overlap=True), "num_envs must be even, got 3"),
        (dict(n_steps=0), "Expected n_steps to be an int >= 1, got 0"),
        (
            dict(n_steps=3, num_envs=1, n_minibatches=2),
            "n_steps * num_envs = 3 does not split into 2 minibatches",
        ),
        (dict(learning_rate=0.0), "Expected learning_rate > 0, got 0.0"),
    ],
)
def test_bad_config_raises(kw, message):
    with pytest.raises(InvalidArgumentError, match=re.escape(message)):
        tiny(**kw).check()


def test_resume_and_init_from_together_raise(tmp_path):
    with pytest.raises(InvalidArgumentError, match=re.escape("Pass --resume or --init-from")):
        train(tiny(), str(tmp_path), resume="a.pt", init_from="b.pt")


def test_a_file_that_is_not_a_checkpoint_is_named(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(InvalidArgumentError, match=re.escape(f"{str(bad)!r} is not a fastretro")):
        load_checkpoint(str(bad))
    with pytest.raises(InvalidArgumentError, match=re.escape("No checkpoint at 'missing.pt'")):
        load_checkpoint("missing.pt")


def test_fine_tuning_with_another_action_set_is_refused(tmp_path):
    result = train(tiny(), str(tmp_path / "run"), progress=False, max_seconds=0.0)
    with pytest.raises(InvalidArgumentError, match=re.escape("was trained with 10 actions")):
        train(
            tiny(actions=["", "B"]),
            str(tmp_path / "tune"),
            init_from=result["checkpoint"],
            progress=False,
        )


def test_cli_trains_plots_and_plays(tmp_path):
    run = tmp_path / "run"
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "fastretro",
            "ppo",
            "--run-dir",
            str(run),
            "--num-envs",
            "2",
            "--n-steps",
            "16",
            "--n-minibatches",
            "2",
            "--n-epochs",
            "1",
            "--total-frames",
            "256",
            "--max-episode-steps",
            "12",
            "--quiet",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    assert summary["frames"] == 256 and summary["episodes"] >= 2
    out = subprocess.run(
        [sys.executable, "-m", "fastretro", "plot", str(run)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert (run / "curve.png").stat().st_size > 1000
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "fastretro",
            "play",
            summary["checkpoint"],
            "--game",
            GAME,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert "mean reward" in out.stdout


def test_cli_rejects_a_bad_level():
    out = subprocess.run(
        [sys.executable, "-m", "fastretro", "ppo", "--level", "SonicTheHedgehog-Genesis"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2
    assert "Expected GAME:STATE, got 'SonicTheHedgehog-Genesis'" in out.stderr
