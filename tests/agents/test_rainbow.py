"""Rainbow: replay kernels and C51 projection against tests/naive.py, tiny runs, CLI, errors."""

from __future__ import annotations

import csv
import dataclasses
import json
import re

import naive
import numpy as np
import pytest
from conftest import GAME

torch = pytest.importorskip("torch")

from fastretro import InvalidArgumentError  # noqa: E402
from fastretro.agents import checkpoints, common, rainbow, replay  # noqa: E402
from fastretro.agents.rainbow import RainbowConfig, load_checkpoint, train  # noqa: E402
from fastretro.agents.replay import PrioritizedReplay  # noqa: E402


def tiny(**kw) -> RainbowConfig:
    """Two envs, a memory of 512, learning from 64 transitions, 100 gradient steps per 800."""
    values = dict(
        num_envs=2,
        total_frames=2 * 100 * 4,
        buffer_size=512,
        learning_starts=64,
        batch_size=8,
        train_interval=8,
        target_interval=50,
        log_every=200,
    )
    values.update(kw)
    return RainbowConfig(**values)


# -- the sum tree ----------------------------------------------------------------------------


@pytest.mark.parametrize("leaves", [1, 5, 64, 1000])
def test_sum_tree_matches_sums_over_leaf_ranges(leaves):
    rng = np.random.default_rng(leaves)
    size = 1 << max(0, (leaves - 1).bit_length())
    tree = np.zeros(2 * size)
    values = np.zeros(leaves)
    for _ in range(20):
        idx = rng.integers(0, leaves, rng.integers(1, 8))
        new = rng.random(len(idx)) * (rng.random(len(idx)) < 0.8)
        replay.sumtree_update(tree, idx.astype(np.int64), new)
        values[idx] = new  # the last write of a repeated leaf wins, as in the kernel
        np.testing.assert_allclose(tree, naive.sum_tree(values, size), rtol=1e-12, atol=1e-12)


def test_prefix_sum_sampling_matches_the_cumulative_sum():
    rng = np.random.default_rng(0)
    size = 128
    # Integer priorities: the prefix sums are exact, so the two agree on every target.
    priorities = rng.integers(0, 5, 100).astype(np.float64)
    priorities[[0, 50, 99]] = 0.0
    tree = np.zeros(2 * size)
    replay.sumtree_update(tree, np.arange(100, dtype=np.int64), priorities)
    total = priorities.sum()
    targets = np.concatenate([rng.random(500) * total, [0.0, total - 1e-9, total, total + 3]])
    leaves, values = np.zeros(len(targets), np.int64), np.zeros(len(targets))
    replay.sumtree_sample_into(tree, targets, leaves, values)
    np.testing.assert_array_equal(leaves, naive.prefix_sample(priorities, targets))
    np.testing.assert_array_equal(values, priorities[leaves])
    assert (values > 0).all(), "a leaf of priority 0 was drawn"


def test_sampling_draws_in_proportion_to_priority():
    mem = PrioritizedReplay(64, 1, (1, 1), 1, 1, 0.9, 1.0, 0.0)
    replay.sumtree_update(mem.tree, np.array([3, 10], np.int64), np.array([1.0, 3.0]))
    counts = np.zeros(64)
    rng = np.random.default_rng(0)
    for _ in range(200):
        np.add.at(counts, mem.sample(16, 0.5, rng)["slots"], 1)
    assert counts[3] + counts[10] == counts.sum()
    assert counts[10] / counts.sum() == pytest.approx(0.75, abs=0.03)


# -- the memory against whole episodes -------------------------------------------------------


def _drive(num_envs, ring, n, stack, steps, seed, p_end=0.08, p_reset=0.01, subset=False):
    """Random episodes into the memory and into the reference; frames are all distinct."""
    rng = np.random.default_rng(seed)
    gamma = 0.9
    mem = PrioritizedReplay(ring * num_envs, num_envs, (2, 3), stack, n, gamma, 0.5, 0.1)
    ref = naive.ReplayReference(num_envs, ring, n, stack)
    counter = [0]

    def frame():
        counter[0] += 1
        c = counter[0]
        return np.array([[c % 256, c // 256 % 256, 7], [1, 2, 3]], np.uint8)

    def stacks(frames):
        out = np.zeros((len(frames), stack, 2, 3), np.uint8)
        out[:, -1] = frames
        return out

    firsts = [frame() for _ in range(num_envs)]
    mem.begin(np.arange(num_envs), stacks(firsts))
    for e in range(num_envs):
        ref.begin(e, firsts[e])
    for _ in range(steps):
        ids = np.arange(num_envs)
        if subset:  # an async pool: any non-empty subset of envs, in any order
            ids = rng.permutation(num_envs)[: rng.integers(1, num_envs + 1)]
        if rng.random() < p_reset:  # a reset mid-episode: the episode is left unfinished
            e = int(rng.integers(num_envs))
            f = frame()
            mem.begin(np.array([e]), stacks([f]))
            ref.begin(e, f)
        actions = rng.integers(0, 7, len(ids))
        rewards = rng.normal(size=len(ids)).astype(np.float32)
        ended = rng.random(len(ids)) < p_end
        terminated = ended & (rng.random(len(ids)) < 0.5)
        truncated = ended & ~terminated
        finals = [frame() if d else None for d in ended]
        nexts = [frame() for _ in ids]
        final_stacks = stacks([f if f is not None else np.zeros((2, 3), np.uint8) for f in finals])
        mem.append(ids, actions, rewards, terminated, truncated, stacks(nexts), final_stacks)
        for j, e in enumerate(ids):
            ref.step(
                e, actions[j], float(rewards[j]), terminated[j], truncated[j], finals[j], nexts[j]
            )
    return mem, ref, gamma


@pytest.mark.parametrize(
    "num_envs, ring, n, stack, subset",
    [(1, 40, 3, 4, False), (3, 30, 3, 4, False), (4, 25, 1, 2, True), (2, 64, 5, 4, True)],
)
@pytest.mark.parametrize("steps", [10, 300])
def test_memory_holds_the_transitions_of_whole_episodes(num_envs, ring, n, stack, subset, steps):
    mem, ref, gamma = _drive(num_envs, ring, n, stack, steps, seed=steps + ring, subset=subset)
    expected = ref.sampleable()
    leaves = mem.tree[len(mem.tree) // 2 :][: ring * num_envs]
    assert set(np.flatnonzero(leaves)) == set(expected)
    assert (leaves[leaves > 0] == 1.0).all(), "new transitions get the largest priority"
    slots = np.array(sorted(expected), np.int64)
    k = len(slots)
    returns, nxt, discounts = (
        np.zeros(k, np.float32),
        np.zeros(k, np.int64),
        np.zeros(k, np.float32),
    )
    replay.nstep_returns_into(
        mem.rewards, mem.flags, slots, ring, n, gamma, returns, nxt, discounts
    )
    obs = np.zeros((k, stack, 2, 3), np.uint8)
    next_obs = np.zeros((k, stack, 2, 3), np.uint8)
    replay.stack_frames_into(mem.frames, mem.flags, slots, ring, obs)
    replay.stack_frames_into(mem.frames, mem.flags, nxt, ring, next_obs)
    for j, slot in enumerate(slots):
        want_obs, want_action, want_ret, want_next, want_disc = ref.transition(
            *expected[slot], gamma
        )
        np.testing.assert_array_equal(obs[j], want_obs, err_msg=f"obs of slot {slot}")
        np.testing.assert_array_equal(next_obs[j], want_next, err_msg=f"next obs of {slot}")
        assert mem.actions[slot] == want_action
        assert returns[j] == pytest.approx(want_ret, rel=1e-5, abs=1e-5)
        assert discounts[j] == pytest.approx(want_disc, rel=1e-6)


def test_a_stack_repeats_the_first_frame_of_a_young_episode():
    mem = PrioritizedReplay(64, 1, (1, 1), 4, 1, 0.9, 0.5, 0.1)
    f = lambda v: np.full((1, 4, 1, 1), v, np.uint8)  # noqa: E731
    mem.begin(np.array([0]), f(10))
    ones, no = np.ones(1, bool), np.zeros(1, bool)
    mem.append([0], [1], [1.0], no, no, f(11))
    mem.append([0], [1], [1.0], ones, no, f(20), final_stacks=f(12))  # 12 is the final frame
    out = np.zeros((3, 4, 1, 1), np.uint8)
    replay.stack_frames_into(mem.frames, mem.flags, np.array([1, 2, 3]), mem.ring, out)
    assert out[:, :, 0, 0].tolist() == [[10, 10, 10, 11], [10, 10, 11, 12], [20, 20, 20, 20]]


def test_nstep_returns_stop_at_a_game_end_and_bootstrap_past_a_time_limit():
    mem = PrioritizedReplay(64, 2, (1, 1), 1, 3, 0.5, 0.5, 0.1)
    f = np.zeros((2, 1, 1, 1), np.uint8)
    mem.begin(np.arange(2), f)
    no = np.zeros(2, bool)
    mem.append([0, 1], [0, 0], [1.0, 1.0], no, no, f)
    # env 0: the game ends; env 1: the time limit.
    mem.append([0, 1], [0, 0], [2.0, 2.0], np.array([True, False]), np.array([False, True]), f, f)
    out = np.zeros(2, np.float32), np.zeros(2, np.int64), np.zeros(2, np.float32)
    replay.nstep_returns_into(mem.rewards, mem.flags, np.array([0, 32]), 32, 3, 0.5, *out)
    assert out[0].tolist() == [2.0, 2.0]  # 1 + 0.5 * 2
    assert out[1].tolist() == [2, 34]  # the episodes' final frames
    assert out[2].tolist() == [0.0, 0.25]


def test_sample_weights_are_relative_to_the_largest_in_the_batch():
    mem, _, _ = _drive(1, 200, 3, 4, 150, seed=1)
    rng = np.random.default_rng(0)
    slots = np.flatnonzero(mem.tree[len(mem.tree) // 2 :])
    mem.update_priorities(slots, rng.random(len(slots)) * 5)
    b = mem.sample(16, 0.4, rng)
    p = mem.tree[len(mem.tree) // 2 + b["slots"]]
    np.testing.assert_allclose(b["weights"], (p / p.min()) ** -0.4, rtol=1e-6)
    assert b["weights"].max() == 1.0
    assert set(b["slots"]) <= set(slots)


def test_an_empty_memory_refuses_to_sample():
    mem = PrioritizedReplay(64, 1, (1, 1), 4, 3, 0.9, 0.5, 0.1)
    with pytest.raises(
        InvalidArgumentError,
        match=re.escape("Cannot sample: no complete transition in the replay memory"),
    ):
        mem.sample(4, 0.4, np.random.default_rng(0))


def test_a_ring_too_small_for_a_transition_is_refused():
    with pytest.raises(
        InvalidArgumentError,
        match=re.escape("Expected a replay capacity of at least 16 slots per env, got 20 for 2"),
    ):
        PrioritizedReplay(20, 2, (1, 1), 4, 3, 0.9, 0.5, 0.1)


# -- the categorical projection and the network ----------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_projection_matches_the_reference(seed):
    rng = np.random.default_rng(seed)
    batch, atoms, v_min, v_max = 9, 51, -10.0, 10.0
    probs = rng.dirichlet(np.ones(atoms), batch)
    returns = rng.normal(0, 6, batch)
    returns[:3] = [0.4, 25.0, -30.0]  # on an atom, clipped above, clipped below
    discounts = rng.choice([0.0, 0.99**3, 0.5, 1.0], batch)
    support = torch.linspace(v_min, v_max, atoms, dtype=torch.float64)
    got = rainbow.project_distribution(
        torch.from_numpy(probs), torch.from_numpy(returns), torch.from_numpy(discounts), support
    )
    want = naive.categorical_projection(probs, returns, discounts, v_min, v_max)
    np.testing.assert_allclose(got.numpy(), want, atol=1e-12)
    np.testing.assert_allclose(got.sum(1).numpy(), 1.0, atol=1e-12)


def test_noisy_layers_draw_noise_in_train_mode_and_use_means_in_eval_mode():
    layer = rainbow.NoisyLinear(6, 3, sigma0=0.5)
    x = torch.randn(2, 6)
    mean = torch.nn.functional.linear(x, layer.weight_mu, layer.bias_mu)
    layer.eval()
    torch.testing.assert_close(layer(x), mean)
    layer.train()
    first = layer(x)
    torch.testing.assert_close(layer(x), first)  # the same noise until reset_noise
    layer.reset_noise()
    assert not torch.allclose(layer(x), first)
    assert torch.allclose(layer.weight_sigma, torch.full((3, 6), 0.5 / 6**0.5))


def test_network_gives_a_distribution_per_action():
    net = rainbow.RainbowNet((4, 84, 84), 7, num_atoms=11)
    logits = net(torch.zeros(3, 4, 84, 84, dtype=torch.uint8))
    assert logits.shape == (3, 7, 11)
    support = torch.linspace(-1, 1, 11)
    assert rainbow.q_values(net, torch.zeros(2, 4, 84, 84, dtype=torch.uint8), support).shape == (
        2,
        7,
    )


# -- runs ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """One tiny run (2 envs, 200 agent steps, 25-step episodes) that the tests below share."""
    from fastretro.runtime.stats import Stopwatch

    run = tmp_path_factory.mktemp("rainbow") / "run"
    watch, seen = Stopwatch(), []

    def on_loop(phase, pools):
        seen.append((phase, pools[0].stats().frames_per_s > 0))

    result = train(
        tiny(max_episode_steps=25), str(run), progress=False, watch=watch, on_loop=on_loop
    )
    return run, result, watch, seen


def test_tiny_run_writes_checkpoint_logs_and_times_its_phases(tiny_run):
    run, result, watch, seen = tiny_run
    assert result["frames"] == 800 and result["updates"] > 0 and result["episodes"] >= 2
    ckpt = load_checkpoint(result["checkpoint"])
    assert ckpt["frames"] == 800 and ckpt["config"]["batch_size"] == 8
    assert ckpt["optimizer"]["state"], "the optimizer state must be saved"
    assert set(ckpt) >= {"model", "target", "action_set"}
    assert ckpt["action_set"] == common.AUTO_ACTIONS[GAME]
    with open(run / "progress.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["frames"]) for r in rows] == [200, 400, 600, 800]
    assert np.isfinite(float(rows[-1]["loss/kl"]))
    lines = (run / "monitor.csv").read_text().splitlines()
    assert lines[1] == "r,l,t,frames" and all(row.split(",")[1] == "25" for row in lines[2:])
    assert any((run / "tb").iterdir()), "TensorBoard scalars are written"
    assert [s[0] for s in seen] == ["start", "end"] and seen[1][1]
    assert set(watch.seconds) == {"inference", "sampling", "learning"}


def test_resume_goes_on_from_the_checkpoints_frames(tiny_run, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(tiny_run[0], run)
    ckpt = str(run / "checkpoints" / "last.pt")
    # The resumed run keeps the checkpoint's config but for total_frames.
    second = train(tiny(total_frames=1200, batch_size=4), str(run), resume=ckpt, progress=False)
    assert second["frames"] == 1200
    with open(run / "progress.csv") as f:
        assert [int(r["frames"]) for r in csv.DictReader(f)] == [200, 400, 600, 800, 1000, 1200]
    resumed = load_checkpoint(second["checkpoint"])
    assert resumed["frames"] == 1200 and resumed["config"]["batch_size"] == 8


def test_init_from_takes_the_weights_only(tiny_run, tmp_path):
    source = load_checkpoint(tiny_run[1]["checkpoint"])
    tuned = train(
        tiny(learning_rate=1e-5),
        str(tmp_path),
        init_from=tiny_run[1]["checkpoint"],
        progress=False,
        max_seconds=0.0,
    )
    assert tuned["frames"] == 0
    out = load_checkpoint(tuned["checkpoint"])
    assert out["config"]["learning_rate"] == 1e-5 and not out["optimizer"]["state"]
    assert out["model"].keys() == source["model"].keys()
    for name, weights in source["model"].items():
        assert torch.equal(out["model"][name], weights), name
        assert torch.equal(out["target"][name], weights), name


def test_play_runs_a_checkpoint_greedy_or_noisy_and_records_movies(tiny_run, tmp_path):
    checkpoint = tiny_run[1]["checkpoint"]
    rewards = rainbow.play(checkpoint, episodes=2, record=str(tmp_path))  # 25-step episodes
    assert len(rewards) == 2 and len(list(tmp_path.rglob("*.bk2"))) >= 2
    assert len(rainbow.play(checkpoint, greedy=False)) == 1


def test_eval_agent_plays_under_the_contest_rules(tiny_run, tmp_path):
    from fastretro.contest.evaluate import evaluate

    factory = rainbow.make_eval_agent(tiny_run[1]["checkpoint"])
    assert factory.env_options == dict(
        actions=common.AUTO_ACTIONS[GAME],
        grayscale=True,
        resize=(84, 84),
        max_pool=True,
        frame_stack=4,
        channels_first=True,
    )
    score = evaluate(
        factory, [(GAME, None)], str(tmp_path), timesteps=40, max_episode_steps=15, progress=False
    )
    assert score["levels"][f"{GAME}-default"]["episodes"] >= 2


def test_async_pool_mode_learns_and_counts_every_step(tmp_path):
    result = train(
        tiny(num_envs=3, env_batch=2, max_episode_steps=30, total_frames=480),
        str(tmp_path),
        progress=False,
    )
    assert result["frames"] >= 480 and result["updates"] > 0
    assert result["steps"] * 4 == result["frames"]
    with open(tmp_path / "monitor.csv") as f:
        f.readline()
        assert {int(r["l"]) for r in csv.DictReader(f)} == {30}


# -- the command line ------------------------------------------------------------------------


def test_cli_trains_with_flags_over_a_preset(tmp_path, capsys):
    code = rainbow.main(
        [
            "--preset",
            "fast",
            "--run-dir",
            str(tmp_path),
            "--num-envs",
            "2",
            "--total-frames",
            "160",
            "--buffer-size",
            "512",
            "--learning-starts",
            "20",
            "--batch-size",
            "4",
            "--no-double-q",
            "--quiet",
            "--json",
        ]
    )
    assert code == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["frames"] == 160 and summary["updates"] > 0
    cfg = load_checkpoint(summary["checkpoint"])["config"]
    assert cfg["double_q"] is False and cfg["buffer_size"] == 512
    assert cfg["target_interval"] == rainbow.PRESETS["fast"]["target_interval"]


def test_cli_help_lists_every_config_field(capsys):
    with pytest.raises(SystemExit):
        rainbow.main(["--help"])
    text = capsys.readouterr().out
    for name in rainbow.RainbowConfig.__dataclass_fields__:
        assert "--" + name.replace("_", "-") in text, name
    assert "Steps per return" in text  # the field docstrings are the flags' help


def test_cli_reports_a_bad_value_in_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        rainbow.main(["--run-dir", str(tmp_path), "--n-step", "0", "--quiet"])
    assert exc.value.code == 2
    assert "error: Expected n_step to be an int >= 1, got 0" in capsys.readouterr().err


def test_the_defaults_are_the_fast_preset():
    defaults = dataclasses.asdict(RainbowConfig())
    assert {k: defaults[k] for k in rainbow.PRESETS["fast"]} == rainbow.PRESETS["fast"]


def test_presets_are_valid_and_retro_baselines_is_anyrl():
    for values in rainbow.PRESETS.values():
        RainbowConfig(**values).check()
    rb = rainbow.PRESETS["retro-baselines"]
    assert (
        rb.items()
        >= dict(
            learning_rate=1e-4,
            gamma=0.99,
            n_step=3,
            buffer_size=500_000,
            alpha=0.5,
            beta=0.4,
            beta_final=0.4,
            priority_eps=0.1,
            learning_starts=20_000,
            batch_size=32,
            train_interval=1,
            target_interval=8192,
            num_atoms=51,
            v_min=-200.0,
            v_max=200.0,
            noisy_sigma0=0.5,
            allow_backtracking=True,
            num_envs=1,
        ).items()
    )


# -- bad input -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        (dict(n_step=0), "Expected n_step to be an int >= 1, got 0"),
        (dict(batch_size=2.5), "Expected batch_size to be an int >= 1, got 2.5"),
        (dict(learning_starts=-1), "Expected learning_starts to be an int >= 0, got -1"),
        (dict(num_atoms=1), "Expected num_atoms to be an int >= 2, got 1"),
        (dict(learning_rate=0.0), "Expected learning_rate > 0, got 0.0"),
        (dict(gamma=1.5), "Expected gamma in [0, 1], got 1.5"),
        (dict(v_min=5.0, v_max=5.0), "Expected v_min < v_max, got v_min=5.0, v_max=5.0"),
        (
            dict(num_envs=2, env_batch=2),
            "Expected env_batch < num_envs (2) for an async pool, or 0, got 2",
        ),
        (dict(buffer_size=4, batch_size=8), "Expected buffer_size >= batch_size (8), got 4"),
        (dict(device="tpu"), "Expected device to be 'auto', 'cpu' or 'cuda[:N]', got 'tpu'"),
    ],
)
def test_bad_config_raises_naming_the_field(kw, message):
    with pytest.raises(InvalidArgumentError, match=re.escape(message)):
        tiny(**kw).check()


def test_resume_and_init_from_together_raise(tmp_path):
    with pytest.raises(InvalidArgumentError, match=re.escape("Pass --resume or --init-from")):
        train(tiny(), str(tmp_path), resume="a.pt", init_from="b.pt")


def test_a_ppo2_checkpoint_is_refused_by_name(tmp_path):
    path = str(tmp_path / "ppo.pt")
    checkpoints.save_checkpoint(path, "ppo2", {}, 0, model={})
    message = f"{path!r} is a fastretro ppo2 checkpoint, not a Rainbow one"
    with pytest.raises(InvalidArgumentError, match=re.escape(message)):
        train(tiny(), str(tmp_path / "run"), init_from=path)
    with pytest.raises(InvalidArgumentError, match=re.escape(message)):
        rainbow.play(path)
    with pytest.raises(InvalidArgumentError, match=re.escape(message)):
        rainbow.make_eval_agent(path)


def test_fine_tuning_with_another_action_set_is_refused(tiny_run, tmp_path):
    path = tiny_run[1]["checkpoint"]
    message = (
        f"{path!r} was trained with the action set {common.AUTO_ACTIONS[GAME]!r}; this run uses "
        "['', 'B']: use the same action set (actions=...)"
    )
    with pytest.raises(InvalidArgumentError, match=re.escape(message)):
        train(tiny(actions=["", "B"]), str(tmp_path), init_from=path, progress=False)


def test_memory_rebuilds_the_pools_own_stacks():
    """On the real pool: every stack the memory rebuilds is the observation the pool gave."""
    pool = rainbow.make_pool(tiny(max_episode_steps=9))
    try:
        n, ring = 2, 64
        mem = PrioritizedReplay(n * ring, n, (84, 84), 4, 3, 0.9, 0.5, 0.1)
        obs, _ = pool.reset(seed=0)
        obs = np.array(obs)
        mem.begin(np.arange(n), obs)
        seen = {}  # slot -> the pool's observation whose newest frame is in it
        for e in range(n):
            seen[e * ring + mem.cursor[e]] = obs[e]
        rng = np.random.default_rng(0)
        for _ in range(40):
            actions = rng.integers(0, 10, n)
            obs, rewards, term, trunc, infos = pool.step(actions)
            obs = np.array(obs)
            final = np.array(obs)
            for j in np.flatnonzero(term | trunc):
                final[j] = infos["final_obs"][j]
            mem.append(np.arange(n), actions, rewards, term, trunc, obs, final)
            for e in range(n):
                if term[e] or trunc[e]:
                    seen[e * ring + (mem.cursor[e] - 1) % ring] = final[e]
                seen[e * ring + mem.cursor[e]] = obs[e]
    finally:
        pool.close()
    slots = np.flatnonzero(mem.tree[len(mem.tree) // 2 :][: n * ring])
    assert len(slots) > 50
    out = np.zeros((len(slots), 4, 84, 84), np.uint8)
    replay.stack_frames_into(mem.frames, mem.flags, slots, ring, out)
    k = len(slots)
    returns, nxt, discounts = (
        np.zeros(k, np.float32),
        np.zeros(k, np.int64),
        np.zeros(k, np.float32),
    )
    replay.nstep_returns_into(mem.rewards, mem.flags, slots, ring, 3, 0.9, returns, nxt, discounts)
    next_out = np.zeros_like(out)
    replay.stack_frames_into(mem.frames, mem.flags, nxt, ring, next_out)
    for j, s in enumerate(slots):
        np.testing.assert_array_equal(out[j], seen[s], err_msg=f"slot {s}")
        np.testing.assert_array_equal(next_out[j], seen[nxt[j]], err_msg=f"next of slot {s}")


def test_the_play_and_eval_commands_take_a_rainbow_checkpoint(tiny_run, tmp_path):
    import subprocess
    import sys

    checkpoint = tiny_run[1]["checkpoint"]
    out = subprocess.run(
        [sys.executable, "-m", "fastretro", "play", checkpoint, "--episodes", "1"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "mean reward" in out.stdout
    out = subprocess.run(
        [sys.executable, "-m", "fastretro", "eval", "--agent", f"rainbow:{checkpoint}",
         "--timesteps", "50", "--max-episode-steps", "25", "--results", str(tmp_path / "r"),
         "--no-progress"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.splitlines()[-1])["levels"]


def test_profile_runs_rainbow():
    from fastretro.tools.profiler import analyse, run_agent

    stats, watch, wall = run_agent(
        "rainbow", "Airstriker-Genesis-v0", None, 2, 8.0, {"learning_starts": 16, "batch_size": 8}
    )
    report = analyse("rainbow", "Airstriker-Genesis-v0", stats, watch, wall)
    assert report.frames > 0 and watch.seconds.get("learning", 0) > 0
