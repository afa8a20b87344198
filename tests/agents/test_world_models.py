"""World Models on the pool: a tiny end-to-end run of every stage, the eval agent, bad input."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import shutil

import gymnasium
import numpy as np
import pytest

from fastretro.errors import InvalidArgumentError

wm = pytest.importorskip("fastretro.agents.world_models")  # needs torch ([ppo] extra)
torch = wm.torch

GAME = "Airstriker-Genesis-v0"
ACTIONS = ["", "B", "LEFT", "RIGHT", "UP", "DOWN", "LEFT+B", "RIGHT+B", "UP+B", "DOWN+B"]

# Small enough for a whole run in well under a minute on 2 cores: short episodes, a narrow VAE,
# a small LSTM, 4 envs answering in batches of 2 (so evolution takes filler steps).
TINY = dict(
    num_envs=4,
    batch_size=2,
    max_episode_steps=40,
    collect_episodes=6,
    shard_steps=60,
    vae_width=4,
    vae_epochs=1,
    vae_max_frames=96,
    rnn_hidden=16,
    mdn_epochs=1,
    mdn_seq_len=16,
    dream_steps=8,
    generations=2,
    popsize=3,
    episodes_per_candidate=2,
)


def _needs_cma():
    return pytest.importorskip("cma")  # the [world-models] extra; see the module docstring


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A run folder that went through collect, vae and mdn (and evolve where pycma is)."""
    run_dir = str(tmp_path_factory.mktemp("wm") / "run")
    cfg = wm.resolve_config(run_dir, "airstriker", **TINY)
    out = {"dir": run_dir, "cfg": cfg}
    out["collect"] = wm.collect(cfg, run_dir, progress=False)
    out["vae"] = wm.train_vae(cfg, run_dir, progress=False)
    out["mdn"] = wm.train_mdn(cfg, run_dir, progress=False)
    try:
        import cma  # noqa: F401
    except ImportError:
        return out
    out["evolve"] = wm.evolve(cfg, run_dir, progress=False)
    return out


# -- the stages ------------------------------------------------------------------------------


def test_collect_writes_shards_of_whole_episodes(run):
    paths = wm.shard_paths(run["dir"])
    assert len(paths) == 2  # 4 episodes end at once (the time limit), then 2 more
    episodes = steps = 0
    for p in paths:
        with np.load(p) as d:
            n = len(d["actions"])
            assert d["observations"].shape == (n, 64, 64, 3)
            assert d["observations"].dtype == np.uint8
            assert d["rewards"].shape == d["terminated"].shape == d["episode_ends"].shape == (n,)
            assert d["episode_ends"][-1]  # whole episodes only
            assert int(d["episode_ends"].sum()) == int(d["episodes"])
            assert str(d["game"]) == GAME
            assert tuple(d["frame_shape"]) == (64, 64, 3)
            assert json.loads(str(d["action_set"])) == ACTIONS
            assert int(d["n_actions"]) == 10
            assert d["actions"].min() >= 0 and d["actions"].max() < 10
            episodes += int(d["episodes"])
            steps += n
    assert episodes == 6
    s = run["collect"]
    assert s["episodes_added"] == 6 and s["steps"] >= steps
    assert s["frames"] == 4 * s["steps"] and s["pool_frames_per_s"] > 0
    assert s["pool"]["resize"] == [64, 64] and s["pool"]["frameskip"] == 4
    with open(os.path.join(run["dir"], "collect.json")) as f:
        assert json.load(f)["episodes_added"] == 6


def test_collect_continues_where_it_stopped(run, tmp_path):
    run_dir = str(tmp_path / "copy")
    shutil.copytree(os.path.join(run["dir"], "shards"), os.path.join(run_dir, "shards"))
    cfg = dataclasses.replace(run["cfg"], collect_episodes=6)
    again = wm.collect(cfg, run_dir, progress=False)
    assert again["episodes_added"] == 0 and again["steps"] == 0
    first = wm.shard_paths(run_dir)
    more = wm.collect(dataclasses.replace(cfg, collect_episodes=7), run_dir, progress=False)
    assert more["episodes_before"] == 6 and more["episodes_added"] == 1
    paths = wm.shard_paths(run_dir)
    assert paths[: len(first)] == first and len(paths) == len(first) + 1
    with np.load(paths[-1]) as d:
        assert int(d["episodes"]) == 1


def test_collect_keeps_each_frame_with_its_action_and_reward(tmp_path):
    # collect books each step while the next one runs: the shards must hold what a plain loop
    # over the same pool sees. The policy reads the frame, so a frame off by one step changes
    # the actions too.
    def policy(obs):
        return obs.reshape(len(obs), -1).sum(1) % 10

    cfg = wm.resolve_config(None, **{**TINY, "num_envs": 2, "collect_episodes": 2, "seed": 0})
    wm.collect(cfg, str(tmp_path), policy=policy, progress=False)
    with np.load(wm.shard_paths(str(tmp_path))[0]) as d:
        got = {k: d[k] for k in ("observations", "actions", "rewards", "terminated")}
    pool = wm.make_pool(cfg, autoreset_mode="same_step")
    try:
        obs, _ = pool.reset(seed=0)  # collect's seed for seed 0 and an empty folder
        running = [{k: [] for k in got} for _ in range(2)]
        episodes = []
        while len(episodes) < 2:
            actions = policy(obs)
            before = obs.copy()
            obs, rewards, terminated, truncated, _ = pool.step(actions)
            for i in range(2):
                for k, v in zip(got, (before[i], actions[i], rewards[i], terminated[i])):
                    running[i][k].append(v)
                if terminated[i] or truncated[i]:
                    episodes.append(running[i])
                    running[i] = {k: [] for k in got}
    finally:
        pool.close()
    for k in got:
        np.testing.assert_array_equal(got[k], np.concatenate([e[k] for e in episodes[:2]]))


def test_a_failed_shard_write_stops_collect_with_its_error(tmp_path, monkeypatch):
    # Shards are written on a background thread: its error must reach the caller.
    def full_disk(path, *args):
        raise OSError(28, "No space left on device", path)

    monkeypatch.setattr(wm.rollouts, "write_shard", full_disk)  # the name collect calls
    cfg = wm.resolve_config(None, **{**TINY, "num_envs": 2, "collect_episodes": 2})
    with pytest.raises(OSError, match="No space left on device"):
        wm.collect(cfg, str(tmp_path), progress=False)
    assert wm.shard_paths(str(tmp_path)) == []


def test_collect_takes_a_given_policy(tmp_path):
    cfg = wm.resolve_config(None, **{**TINY, "num_envs": 2, "collect_episodes": 2})
    wm.collect(cfg, str(tmp_path), policy=lambda obs: np.full(len(obs), 3), progress=False)
    with np.load(wm.shard_paths(str(tmp_path))[0]) as d:
        assert set(d["actions"].tolist()) == {3}


def test_vae_trains_and_draws_reconstructions(run):
    from PIL import Image

    s = run["vae"]
    assert s["frames_trained"] == (96 // 32) * 32 and s["frames_in_data"] == 96
    with Image.open(os.path.join(run["dir"], "reconstructions.png")) as im:
        assert im.size == (8 * 64 * 2, 2 * 64 * 2)  # 8 frames above 8 reconstructions, x2
    vae, ckpt = wm.load_vae(os.path.join(run["dir"], "vae.pt"), run["cfg"])
    assert ckpt["agent"] == "world_models_vae" and ckpt["epochs"] == 1
    with open(os.path.join(run["dir"], "vae.csv")) as f:
        assert len(f.read().splitlines()) == 2


def test_mdn_trains_and_dreams(run):
    from PIL import Image

    s = run["mdn"]
    assert s["epochs"] == 1 and s["dream_frames"] == 8
    with Image.open(os.path.join(run["dir"], "dream.gif")) as im:
        assert im.n_frames == 8 and im.size == (4 * 64, 2 * 64)  # real | dream, x2
    mdn, ckpt = wm.load_mdn(os.path.join(run["dir"], "mdn.pt"), run["cfg"], 10)
    assert ckpt["agent"] == "world_models_mdn" and mdn.hidden == 16 and mdn.gaussians == 5
    assert os.path.exists(os.path.join(run["dir"], "latents.npz"))


def test_evolve_logs_generations_and_continues(run):
    _needs_cma()
    s = run["evolve"]
    assert s["generations_run"] == 2 and s["parameters"] == 10 * (32 + 16) + 10
    assert s["pool_frames_per_s"] > 0 and s["frames"] > 0
    assert s["pool"]["batch_size"] == 2 and s["pool"]["num_envs"] == 4
    with open(os.path.join(run["dir"], "evolution.csv")) as f:
        rows = f.read().splitlines()
    assert rows[0].startswith("generation,frames,return/best,return/mean,return/worst")
    assert len(rows) == 3
    assert os.path.getsize(os.path.join(run["dir"], "evolution.png")) > 0
    ckpt = wm.load_controller(os.path.join(run["dir"], "controller.pt"), run["cfg"])
    assert ckpt["generation"] == 2 and len(ckpt["best_params"]) == s["parameters"]
    # A second call with more generations continues from the checkpoint's CMA-ES state.
    more = wm.evolve(dataclasses.replace(run["cfg"], generations=3), run["dir"], progress=False)
    assert more["generations_run"] == 1 and more["last"]["generation"] == 3


def test_play_returns_each_episode_and_records_movies(run, tmp_path):
    _needs_cma()
    returns = wm.play(run["dir"], episodes=3, num_envs=2, record=str(tmp_path / "bk2"))
    assert len(returns) == 3 and all(math.isfinite(r) for r in returns)
    movies = [f for _, _, files in os.walk(tmp_path / "bk2") for f in files if f.endswith(".bk2")]
    assert len(movies) >= 3


def test_eval_agent_factory_runs_under_fastretro_eval(run, tmp_path):
    _needs_cma()
    from fastretro.contest.evaluate import evaluate

    factory = wm.make_eval_agent(run["dir"])
    assert factory.env_options == {"resize": (64, 64), "actions": ACTIONS}
    score = evaluate(
        factory,
        [(GAME, None)],
        str(tmp_path / "results"),
        timesteps=50,
        max_episode_steps=20,
        progress=False,
    )
    assert score is not None
    agent = factory(
        gymnasium.spaces.Box(0, 255, (2, 64, 64, 3), np.uint8),
        gymnasium.spaces.MultiDiscrete([10, 10]),
    )
    actions = agent.act(np.zeros((2, 64, 64, 3), np.uint8))
    assert actions.shape == (2,) and actions.dtype.kind == "i" and actions.max() < 10
    agent.observe(np.zeros(2), np.array([True, False]), np.array([False, False]))


def test_cli_runs_a_stage(run, capsys):
    _needs_cma()
    assert wm.main(["play", "--run-dir", run["dir"], "--episodes", "1", "--json"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["stage"] == "play" and len(out["returns"]) == 1


# -- bad input -------------------------------------------------------------------------------


def test_shards_of_another_game_are_refused(run):
    path = wm.shard_paths(run["dir"])[0]
    cfg = dataclasses.replace(run["cfg"], game="SonicTheHedgehog-Genesis")
    msg = (
        f"{path!r} holds frames of 'Airstriker-Genesis-v0', not of 'SonicTheHedgehog-Genesis': "
        "collect into another run folder"
    )
    with pytest.raises(InvalidArgumentError, match=re.escape(msg)):
        wm.train_vae(cfg, run["dir"], progress=False)
    with pytest.raises(InvalidArgumentError, match=re.escape(msg)):
        wm.collect(cfg, run["dir"], progress=False)


def test_shards_of_another_frame_size_are_refused(run):
    path = wm.shard_paths(run["dir"])[0]
    cfg = dataclasses.replace(run["cfg"], frame_size=72)
    msg = (
        f"{path!r} holds 64x64x3 frames, not 72x72x3 (frame_size=72): collect into another "
        "run folder"
    )
    with pytest.raises(InvalidArgumentError, match=re.escape(msg)):
        wm.load_shards(run["dir"], cfg, ["actions"])


def test_vae_of_another_frame_size_is_refused(run):
    path = os.path.join(run["dir"], "vae.pt")
    cfg = dataclasses.replace(run["cfg"], frame_size=72)
    msg = (
        f"{path!r} is a VAE of 64x64 frames, not 72x72 (frame_size=72): train one on this "
        "run's frames"
    )
    with pytest.raises(InvalidArgumentError, match=re.escape(msg)):
        wm.train_mdn(cfg, run["dir"], progress=False)


def test_eval_agent_refuses_frames_the_vae_was_not_trained_on(run):
    _needs_cma()
    factory = wm.make_eval_agent(run["dir"])
    msg = (
        f"The VAE of {run['dir']!r} takes 64x64x3 frames, got observations of shape "
        "(84, 84, 1): pass the env_options resize=(64, 64), grayscale=False"
    )
    with pytest.raises(InvalidArgumentError, match=re.escape(msg)):
        factory(gymnasium.spaces.Box(0, 255, (84, 84, 1), np.uint8), gymnasium.spaces.Discrete(10))


def test_controller_of_another_action_set_is_refused(run):
    _needs_cma()
    path = os.path.join(run["dir"], "controller.pt")
    cfg = dataclasses.replace(run["cfg"], actions="sonic7")
    msg = (
        f"{path!r} was evolved for the action set {ACTIONS!r} (10 actions), not 'sonic7': use "
        "the run's action set"
    )
    with pytest.raises(InvalidArgumentError, match=re.escape(msg)):
        wm.play(run["dir"], cfg=cfg)
    factory = wm.make_eval_agent(run["dir"])
    msg = (
        f"The controller of {run['dir']!r} was evolved for 10 actions ({ACTIONS!r}), got an env "
        "with 7: pass the env_options actions"
    )
    with pytest.raises(InvalidArgumentError, match=re.escape(msg)):
        factory(gymnasium.spaces.Box(0, 255, (64, 64, 3), np.uint8), gymnasium.spaces.Discrete(7))


def test_mdn_of_another_action_count_is_refused(run):
    path = os.path.join(run["dir"], "mdn.pt")
    msg = (
        f"{path!r} was trained on 10 actions ({ACTIONS!r}); this env has 7: use the run's "
        "action set"
    )
    with pytest.raises(InvalidArgumentError, match=re.escape(msg)):
        wm.load_mdn(path, run["cfg"], 7)


def test_a_checkpoint_of_another_model_is_refused(run):
    path = os.path.join(run["dir"], "vae.pt")
    msg = f"{path!r} is a fastretro world_models_vae checkpoint, not a World Models MDN-RNN one"
    with pytest.raises(InvalidArgumentError, match=re.escape(msg)):
        wm.load_mdn(path, run["cfg"], 10)


def test_collect_before_anything_else_is_asked_for(tmp_path):
    msg = f"No shards in {str(tmp_path / 'shards')!r}: run 'fastretro world-models collect' first"
    with pytest.raises(InvalidArgumentError, match=re.escape(msg)):
        wm.train_vae(wm.resolve_config(None, **TINY), str(tmp_path), progress=False)


@pytest.mark.parametrize(
    ("settings", "msg"),
    [
        ({"num_envs": 6, "batch_size": 4}, "Expected batch_size to divide num_envs (6), got 4"),
        ({"frame_size": 40}, "Expected frame_size >= 46 (four 4x4 stride-2 convolutions), got 40"),
        ({"popsize": 1}, "Expected popsize >= 2, got 1"),
        ({"vae_loss": "l1"}, "Expected vae_loss to be 'l2' or 'bce', got 'l1'"),
        (
            {"collect_policy": "jerk"},
            "Expected collect_policy to be 'random' or 'controller', got 'jerk'",
        ),
        ({"nope": 1}, "Unknown World Models settings: ['nope']"),
        ({"popsise": 4}, "Unknown World Models settings: ['popsise'] (did you mean 'popsize'?)"),
    ],
)
def test_bad_settings_are_refused(settings, msg):
    with pytest.raises(InvalidArgumentError, match=re.escape(msg)):
        wm.resolve_config(None, **settings)


def test_an_unknown_preset_is_refused():
    msg = "Expected preset to be one of ['airstriker', 'sonic'], got 'pong'"
    with pytest.raises(InvalidArgumentError, match=re.escape(msg)):
        wm.resolve_config(None, "pong")


def test_cli_has_a_flag_per_setting_with_its_docstring_as_help(capsys):
    with pytest.raises(SystemExit) as exc:
        wm.main(["vae", "--help"])
    assert exc.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "settings (default: the run folder's config.json):" in out
    assert "--vae-loss VAE_LOSS Reconstruction loss, summed per frame" in out
    assert "--cma-diagonal, --no-cma-diagonal" in out and "--resume" not in out


def test_cli_reports_bad_input_in_one_line(run, capsys):
    with pytest.raises(SystemExit) as exc:
        wm.main(["mdn", "--run-dir", run["dir"], "--frame-size", "72", "--quiet"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.endswith(
        "is a VAE of 64x64 frames, not 72x72 (frame_size=72): train one on this run's frames"
    )


# -- the pieces, against plain numpy ---------------------------------------------------------


def test_vae_shapes_follow_the_paper():
    vae = wm.ConvVAE(32, 32, 64)
    frames = torch.zeros(3, 64, 64, 3, dtype=torch.uint8)
    recon, mu, logvar = vae(wm.ConvVAE.to_input(frames))
    assert recon.shape == (3, 3, 64, 64) and mu.shape == logvar.shape == (3, 32)
    convs = [m for m in vae.encoder if isinstance(m, torch.nn.Conv2d)]
    assert [(c.out_channels, c.kernel_size, c.stride) for c in convs] == [
        (32, (4, 4), (2, 2)),
        (64, (4, 4), (2, 2)),
        (128, (4, 4), (2, 2)),
        (256, (4, 4), (2, 2)),
    ]
    assert wm.ConvVAE(8, 4, 80).decode(torch.zeros(2, 8)).shape == (2, 3, 80, 80)


@pytest.mark.parametrize("reconstruction", ["l2", "bce"])
def test_vae_losses_match_numpy(reconstruction):
    rng = np.random.default_rng(2)
    x, recon = rng.uniform(size=(2, 3, 4, 4)), rng.uniform(0.05, 0.95, size=(2, 3, 4, 4))
    mu, logvar = rng.normal(size=(2, 5)), rng.normal(scale=0.5, size=(2, 5))
    if reconstruction == "l2":
        want_r = ((recon - x) ** 2).sum((1, 2, 3)).mean()
    else:
        want_r = -(x * np.log(recon) + (1 - x) * np.log(1 - recon)).sum((1, 2, 3)).mean()
    kl = -0.5 * (1 + logvar - mu**2 - np.exp(logvar)).sum(1)
    got_r, got_kl = wm.vae_loss(
        *(torch.from_numpy(a) for a in (x, recon, mu, logvar)), 2.0, reconstruction
    )
    np.testing.assert_allclose(float(got_r), want_r, rtol=1e-6)
    np.testing.assert_allclose(float(got_kl), np.maximum(kl, 2.0).mean(), rtol=1e-6)


def _mixture_nll_numpy(logits, mu, logsigma, target):
    """-log sum_k pi_k N(target | mu_k, sigma_k), per dimension, in plain numpy."""
    pi = np.exp(logits - logits.max(-1, keepdims=True))
    pi /= pi.sum(-1, keepdims=True)
    sigma = np.exp(logsigma)
    dens = np.exp(-0.5 * ((target[..., None] - mu) / sigma) ** 2) / (sigma * np.sqrt(2 * np.pi))
    return -np.log((pi * dens).sum(-1))


def test_mdn_nll_matches_numpy():
    rng = np.random.default_rng(0)
    logits, mu = rng.normal(size=(2, 3, 4, 5)), rng.normal(size=(2, 3, 4, 5))
    logsigma, target = rng.normal(scale=0.3, size=(2, 3, 4, 5)), rng.normal(size=(2, 3, 4))
    logpi = torch.from_numpy(logits).log_softmax(-1)
    got = wm.mdn_nll(
        logpi, torch.from_numpy(mu), torch.from_numpy(logsigma), torch.from_numpy(target)
    )
    np.testing.assert_allclose(
        got.numpy(), _mixture_nll_numpy(logits, mu, logsigma, target), rtol=1e-10
    )


def test_sampling_a_sharp_mixture_gives_its_dominant_mean():
    logpi = torch.log(torch.tensor([[[1e-9, 1.0 - 1e-9]]]))
    mu = torch.tensor([[[-5.0, 3.0]]])
    logsigma = torch.full((1, 1, 2), -9.0)
    z = wm.sample_mixture(logpi, mu, logsigma, 1.0, torch.Generator().manual_seed(0))
    assert z.shape == (1, 1) and abs(float(z) - 3.0) < 1e-3


def test_controller_actions_match_numpy():
    rng = np.random.default_rng(1)
    z, h = rng.normal(size=(4, 3)), rng.normal(size=(4, 5))
    weights = rng.normal(size=(4, wm.controller_size(3, 5, 6)))
    got = wm.controller_actions(torch.from_numpy(z), torch.from_numpy(h), torch.from_numpy(weights))
    x = np.concatenate([z, h], 1)
    want = [np.argmax(w[: 6 * 8].reshape(6, 8) @ xi + w[6 * 8 :]) for w, xi in zip(weights, x)]
    assert got.tolist() == want


def test_training_sequences_cover_every_step_once():
    ends = np.zeros(50, bool)
    ends[[9, 10, 44, 49]] = True  # episodes of 10, 1, 34 and 5 steps
    idx, valid = wm.mdn_rnn._sequence_index(ends, 8, np.random.default_rng(0))
    assert sorted(idx[valid].tolist()) == list(range(50))
    assert valid[:, 0].all()  # no sequence starts outside its episode
    assert (np.diff(valid.astype(int), axis=1) <= 0).all()  # padding comes last
    episode = np.searchsorted(np.flatnonzero(ends), np.arange(50))
    for row, ok in zip(idx, valid):
        assert len(set(episode[row[ok]])) == 1


def test_frames_reach_the_encoder_contiguous_and_scaled():
    frames = torch.from_numpy(np.random.default_rng(3).integers(0, 256, (2, 64, 64, 3), np.uint8))
    x = wm.ConvVAE.to_input(frames)
    assert x.is_contiguous()  # the permuted strides take oneDNN's slow path
    np.testing.assert_allclose(x.numpy(), frames.numpy().transpose(0, 3, 1, 2) / 255.0, rtol=1e-6)


def test_mdn_step_matches_the_sequence_and_a_numpy_lstm_cell():
    torch.manual_seed(0)
    mdn = wm.MDNRNN(z_size=4, n_actions=3, hidden=6)
    z, actions = torch.randn(2, 5, 4), torch.randint(0, 3, (2, 5))
    *_, hidden_seq, _ = mdn(z, actions)
    lstm = {k: v.detach().numpy().astype(np.float64) for k, v in mdn.lstm.named_parameters()}
    h = c = torch.zeros(2, 6)
    h_np = c_np = np.zeros((2, 6))
    sig = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    for t in range(5):
        h, c = mdn.step(z[:, t], actions[:, t], (h, c))
        x = mdn.inputs(z[:, t], actions[:, t]).numpy().astype(np.float64)
        gates = x @ lstm["weight_ih_l0"].T + lstm["bias_ih_l0"]
        gates += h_np @ lstm["weight_hh_l0"].T + lstm["bias_hh_l0"]
        i, f, g, o = np.split(gates, 4, axis=1)  # PyTorch's gate order
        c_np = sig(f) * c_np + sig(i) * np.tanh(g)
        h_np = sig(o) * np.tanh(c_np)
        np.testing.assert_allclose(h.detach().numpy(), h_np, atol=1e-5)
        np.testing.assert_allclose(c.detach().numpy(), c_np, atol=1e-5)
        np.testing.assert_allclose(h.detach().numpy(), hidden_seq[:, t].detach().numpy(), atol=1e-5)
