"""The bench engine: it measures every backend it is asked for and writes JSON, PNG and a table."""

from __future__ import annotations

import json
import re

import gymnasium
import numpy as np
import pytest
from conftest import GAME

from fastretro.errors import GameNotFoundError, InvalidArgumentError
from fastretro.tools import bench, peers


def test_run_bench_writes_json_png_and_table(tmp_path):
    report = bench.run_bench(
        GAME,
        configs=("rgb-fs1",),
        num_envs=(1, 2),
        backends=("limit", "inprocess", "single", "gymnasium", "fastretro-drawn", "fastretro"),
        seconds=0.2,
        warmup=0.05,
        out_dir=str(tmp_path),
        progress=False,
    )
    data = json.loads((tmp_path / "bench.json").read_text())
    assert set(data) == {"machine", "settings", "results"}
    assert data["machine"]["cores"] >= 1
    assert (tmp_path / "bench.png").stat().st_size > 10_000
    got = {(r["backend"], r["num_envs"]) for r in report["results"]}
    assert got == {
        ("limit", None),
        ("inprocess", None),
        ("single", None),
        ("gymnasium", 1),
        ("gymnasium", 2),
        ("fastretro-drawn", 1),
        ("fastretro-drawn", 2),
        ("fastretro", 1),
        ("fastretro", 2),
    }
    assert all(r["error"] is None and r["frames_per_s"] > 0 for r in report["results"])
    table = bench.format_table(report, markdown=True)
    for backend in ("limit", "single", "gymnasium", "fastretro-drawn", "fastretro"):
        assert f"| rgb-fs1 | {backend} |" in table
    assert re.search(r"\(\d+\.\d\d L, \d+\.\d\dx gym\)", table)  # fastretro-drawn: no E
    assert re.search(r"\(\d+\.\d\d L, E \d+\.\d\d, \d+\.\d\dx gym\)", table)


def test_lean_references_run_the_core_alone_with_and_without_the_shortcuts(tmp_path):
    report = bench.run_bench(
        GAME,
        configs=("contest",),
        num_envs=(1,),
        backends=("lean", "lean-drawn"),
        seconds=0.2,
        warmup=0.05,
        out_dir=None,
        progress=False,
    )
    got = {r["backend"]: r for r in report["results"]}
    assert set(got) == {"lean", "lean-drawn"}
    assert all(r["error"] is None and r["frames_per_s"] > 0 for r in got.values())
    assert "E_lean" in report["settings"]


def test_the_lean_reference_holds_the_buttons_the_pool_holds():
    # Through stable-retro's filter_action, as RetroEnv's default action set and the pool's
    # "filtered" table press them: raw random buttons press START, which the pool never does.
    import stable_retro

    from fastretro.tools.peers import CONFIGS, pressed_buttons, random_actions

    env = stable_retro.make(GAME, render_mode=None)
    try:
        rows = pressed_buttons(CONFIGS["contest"], GAME, env.data, env.buttons)
        bits = 1 << np.arange(len(env.buttons))
        want = [env.data.filter_action(int(r @ bits)) for r in random_actions(None)]
        assert [int(r @ bits) for r in rows] == want
        start = env.buttons.index("START")
        assert not any(r[start] for r in rows)
        assert random_actions(None)[:, start].sum() > 400  # the raw ones press it
    finally:
        env.close()


def test_the_lean_reference_starts_again_where_the_pools_episode_ends():
    # Played on past its end the game runs cheaper frames than the pool plays: the loop loads
    # the start state where the scenario says the episode ended, as the pool's reset does (an
    # episode that did not start again would end again at the next step).
    from fastretro.tools.peers import CONFIGS, lean_loop

    step, buttons, close = lean_loop(GAME, CONFIGS["contest"])
    try:
        ends = [k for k in range(2000) if step(buttons[k % len(buttons)])]
    finally:
        close()
        del step  # it holds the emulator, and stable-retro allows one per process
    assert len(ends) >= 2, "random buttons end Airstriker episodes within hundreds of steps"
    assert min(np.diff(ends)) > 50
    step, buttons, close = lean_loop(GAME, CONFIGS["contest"].replace(max_episode_steps=7))
    try:
        assert [k for k in range(21) if step(buttons[k])] == [6, 13, 20]
    finally:
        close()


def test_the_pool_on_the_libretro_backend_is_benched_against_the_same_references():
    report = bench.run_bench(
        GAME,
        configs=("rgb-fs1",),
        num_envs=(2,),
        backends=("inprocess", "fastretro-libretro"),
        seconds=0.2,
        warmup=0.05,
        out_dir=None,
        progress=False,
    )
    assert all(r["error"] is None and r["frames_per_s"] > 0 for r in report["results"])
    assert bench.efficiency(report, "rgb-fs1", "fastretro-libretro", 2) > 0


def test_efficiency_divides_by_the_same_work_on_the_cores_the_envs_can_use():
    # L_same = min(num_envs, cores) x the in-process frames/s of the same work.
    def row(backend, n, fps):
        return {"config": "rgb-fs1", "backend": backend, "num_envs": n, "frames_per_s": fps}

    report = {
        "machine": {"cores": 2},
        "settings": {
            "configs": {"rgb-fs1": {}},
            "backends": ["inprocess", "fastretro"],
            "num_envs": [1, 4],
            "game": GAME,
        },
        "results": [
            row("inprocess", None, 1000.0),
            row("fastretro", 1, 800.0),
            row("fastretro", 4, 1800.0),
        ],
    }
    assert bench.efficiency(report, "rgb-fs1", "fastretro", 1) == pytest.approx(0.8)
    assert bench.efficiency(report, "rgb-fs1", "fastretro", 4) == pytest.approx(0.9)
    assert bench.efficiency(report, "rgb-fs1", "fastretro-drawn", 4) is None  # no reference
    table = bench.format_table(report, markdown=True)
    assert "| rgb-fs1 | fastretro | 800 (E 0.80) | 1,800 (E 0.90) |" in table


def test_lean_efficiency_divides_by_the_cores_own_work():
    # E_lean: the same division, by the lean loop's frames/s (the core's work alone).
    def row(backend, n, fps):
        return {"config": "contest", "backend": backend, "num_envs": n, "frames_per_s": fps}

    report = {
        "machine": {"cores": 2},
        "settings": {
            "configs": {"contest": {}},
            "backends": ["inprocess", "lean", "fastretro"],
            "num_envs": [2],
            "game": GAME,
        },
        "results": [
            row("inprocess", None, 1000.0),
            row("lean", None, 1250.0),
            row("fastretro", 2, 1800.0),
        ],
    }
    assert bench.efficiency(report, "contest", "fastretro", 2, lean=True) == pytest.approx(0.72)
    assert bench.efficiency(report, "contest", "fastretro-drawn", 2, lean=True) is None
    table = bench.format_table(report, markdown=True)
    assert "| contest | fastretro | 1,800 (E 0.90, E_lean 0.72) |" in table


def _report(limits: dict, fastretro: float) -> dict:
    """A report as run_bench returns it, with given limit readings and one fastretro figure."""
    results = []
    for config, limit in limits.items():
        results.append(
            {"config": config, "backend": "limit", "num_envs": None, "frames_per_s": limit}
        )
        results.append(
            {"config": config, "backend": "fastretro", "num_envs": 4, "frames_per_s": fastretro}
        )
    settings = {"configs": dict.fromkeys(limits), "backends": ["limit", "fastretro"]}
    return {"settings": {**settings, "num_envs": [4], "game": GAME}, "results": results}


def test_every_ratio_uses_the_median_limit_reading_of_the_run():
    # L does not depend on the config; one slow (or fast) reading must not move that config's
    # ratios.
    report = _report({"rgb-fs1": 1000.0, "rgb-fs4-sticky": 4000.0, "contest": 2000.0}, 1500.0)
    assert bench.run_limit(report) == 2000.0
    table = bench.format_table(report, markdown=True)
    for config in ("rgb-fs1", "rgb-fs4-sticky", "contest"):
        assert f"| {config} | fastretro | 1,500 (0.75 L) |" in table
    # Each reading stays visible, as a fraction of L: the spread is the machine's noise.
    assert "| rgb-fs1 | limit | 1,000 (0.50 L) |" in table
    assert "| rgb-fs4-sticky | limit | 4,000 (2.00 L) |" in table


def test_repeat_measures_each_cell_again_and_reports_the_median(tmp_path, monkeypatch):
    calls = []
    figures = iter([100.0, 10.0, 300.0, 30.0, 200.0, 20.0])  # limit, fastretro; three rounds

    def fake_measure(backend, game, config, n, seconds, warmup):
        calls.append(backend)
        return "ok", next(figures)

    monkeypatch.setattr(bench, "_measure", fake_measure)
    monkeypatch.setattr(bench, "cores", lambda: 2)
    report = bench.run_bench(
        GAME,
        configs=("rgb-fs1",),
        num_envs=(1,),
        backends=("limit", "fastretro"),
        out_dir=str(tmp_path),
        progress=False,
        plot=False,
        repeat=3,
    )
    # The whole plan runs three times over: a cell's readings are spread across the run.
    assert calls == ["limit", "fastretro"] * 3
    limit, fastretro = report["results"]
    assert limit["readings"] == [200.0, 600.0, 400.0]  # x 2 cores
    assert limit["frames_per_s"] == 400.0
    assert fastretro["readings"] == [10.0, 30.0, 20.0]  # x frameskip 1
    assert fastretro["frames_per_s"] == 20.0
    assert bench.run_limit(report) == 400.0
    assert report["settings"]["repeat"] == 3


def test_a_cell_with_some_failed_readings_keeps_the_others(tmp_path, monkeypatch):
    outcomes = iter([("error", "boom"), ("ok", 50.0), ("error", "again")])
    monkeypatch.setattr(bench, "_measure", lambda *args: next(outcomes))
    kwargs = dict(configs=("rgb-fs1",), num_envs=(1,), backends=("fastretro",), plot=False)
    report = bench.run_bench(GAME, out_dir=str(tmp_path), progress=False, repeat=3, **kwargs)
    (cell,) = report["results"]
    assert cell["readings"] == [None, 50.0, None]
    assert (cell["frames_per_s"], cell["error"]) == (50.0, None)
    outcomes = iter([("error", "boom"), ("error", "again")])
    report = bench.run_bench(GAME, out_dir=str(tmp_path), progress=False, repeat=2, **kwargs)
    (cell,) = report["results"]
    assert (cell["frames_per_s"], cell["error"], cell["readings"]) == (None, "boom", [None, None])


def test_a_failed_or_absent_limit_reading_gives_no_ratio():
    report = _report({"rgb-fs1": None}, fastretro=1500.0)
    assert bench.run_limit(report) is None
    assert "| rgb-fs1 | fastretro | 1,500 |" in bench.format_table(report, markdown=True)


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (
            {"configs": ("rgb-fs9",)},
            InvalidArgumentError,
            "Unknown config 'rgb-fs9'; expected one of ['rgb-fs1', 'rgb-fs4-sticky', 'contest', "
            "'world-models', 'atari', 'atari-envpool-v5', 'atari-rgb-fs1']",
        ),
        (
            {"backends": ("nope",)},
            InvalidArgumentError,
            "Unknown backend 'nope'; expected one of ['limit', 'limit-ale', 'inprocess', "
            "'inprocess-drawn', 'lean', 'lean-drawn', 'single', 'gymnasium', 'sb3', "
            "'fastretro-drawn', 'envpool', 'ale-vector', 'fastretro', 'fastretro-libretro']",
        ),
        ({"num_envs": (0,)}, InvalidArgumentError, "Expected every num_envs >= 1, got 0"),
        ({"seconds": 0}, InvalidArgumentError, "Expected seconds > 0, got 0"),
        ({"repeat": 0}, InvalidArgumentError, "Expected repeat to be an int >= 1, got 0"),
        ({"repeat": 1.5}, InvalidArgumentError, "Expected repeat to be an int >= 1, got 1.5"),
        ({"game": "Nope-v0"}, GameNotFoundError, "Unknown game 'Nope-v0'"),
    ],
)
def test_bad_bench_arguments(kwargs, error, message, tmp_path):
    with pytest.raises(error, match=re.escape(message)):
        bench.run_bench(**{"out_dir": str(tmp_path), "progress": False, **kwargs})


def test_cli_bench_reports_bad_input_with_exit_code_2(capsys):
    assert bench.main(["--configs", "nope", "--out", ""]) == 2
    assert "fastretro bench: Unknown config 'nope'" in capsys.readouterr().err


def test_contest_config_runs_on_every_backend(tmp_path):
    report = bench.run_bench(
        GAME,
        configs=("contest",),
        num_envs=(2,),
        backends=("single", "gymnasium", "fastretro"),
        seconds=0.2,
        warmup=0.05,
        out_dir=str(tmp_path),
        progress=False,
        plot=False,
    )
    assert all(r["error"] is None and r["frames_per_s"] > 0 for r in report["results"])
    assert report["settings"]["configs"]["contest"]["frame_stack"] == 4


def test_peer_wrappers_preprocess_like_the_pool(monkeypatch):
    # The peers' WarpFrame (OpenCV, or fastretro's kernels without it) gives what VecRetroEnv
    # gives for the contest config, so the bench compares like with like.
    frame = np.random.default_rng(0).integers(0, 256, (224, 320, 3), dtype=np.uint8)
    results = []
    for opencv in (True, False):
        monkeypatch.setattr(peers, "OPENCV", opencv)
        warp = peers.WarpFrame(_Screen(), grayscale=True, size=(84, 84))
        assert warp.observation_space.shape == (84, 84, 1)
        results.append(warp.observation(frame).astype(int))
    assert results[0].shape == (84, 84, 1)
    assert np.abs(results[0] - results[1]).max() <= 1


class _Screen(gymnasium.Env):
    """An env that only has a screen-shaped observation space."""

    observation_space = gymnasium.spaces.Box(0, 255, (224, 320, 3), np.uint8)
    action_space = gymnasium.spaces.MultiBinary(12)


def test_atari_games_are_benched_under_the_standard_protocol_against_their_peers(tmp_path):
    pytest.importorskip("ale_py", reason="ale-py is the atari extra")
    report = bench.run_bench(
        "Pong-Atari2600-v0",
        num_envs=(2,),
        backends=("limit-ale", "inprocess", "ale-vector", "fastretro"),
        seconds=0.2,
        warmup=0.05,
        out_dir=str(tmp_path),
        progress=False,
    )
    assert {r["config"] for r in report["results"]} == {
        "atari",
        "atari-envpool-v5",
        "atari-rgb-fs1",
    }
    assert all(r["error"] is None and r["frames_per_s"] > 0 for r in report["results"])
    table = bench.format_table(report, markdown=True)
    assert re.search(r"\| atari \| fastretro \| [\d,]+ \(\d+\.\d\d L_ale, E \d\.\d\d, "
                     r"\d+\.\d\dx ALE-vec\) \|", table)  # fmt: skip
