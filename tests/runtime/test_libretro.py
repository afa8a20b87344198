"""The libretro backend: several Genesis emulators per process, each matching plain stable-retro.

stable-retro runs in a spawned process (one emulator per process, never one in the test
process); the libretro emulators run here, several at once, each on its own copy of the core.
Pictures are compared by digest, frame by frame.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import os
import re
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import pytest

from fastretro import VecRetroEnv
from fastretro.errors import InvalidArgumentError
from fastretro.runtime import headless
from fastretro.runtime._ext.libretro import CoreError, decode_plan_into, rgb565_to_rgb_into
from fastretro.runtime._ext.worker_loop import VariableScenario
from fastretro.runtime.backends import libretro
from fastretro.runtime.backends.ale_ram import RamDecoder
from fastretro.runtime.backends.libretro import LibretroEmulator
from fastretro.runtime.games import resolve

GAME = "Airstriker-Genesis-v0"
DATA = os.path.join(os.path.dirname(os.path.dirname(__file__)), "data")
FRAMES = 300


def stable_retro_core_path() -> str:
    """The Genesis core stable-retro ships (imported here without making an emulator)."""
    import stable_retro

    return stable_retro.get_core_path("Genesis")


def _masks(seed: int) -> list[int]:
    """Seeded random button masks, one a frame, over the Genesis's 12 buttons."""
    return np.random.default_rng(seed).integers(0, 1 << 12, FRAMES).tolist()


def _digest(picture: np.ndarray) -> str:
    return hashlib.sha1(np.ascontiguousarray(picture).tobytes()).hexdigest()


def _retro_runs(sequences: list[list[int]]) -> tuple[list[dict], dict]:
    """Plain stable-retro (``RetroEnv.step``, filtered actions): one episode per sequence.

    Also the button groups and the filter of every mask, as its ``GameData`` gives them.
    """
    import stable_retro

    runs, actions = [], {}
    for masks in sequences:
        env = stable_retro.make(GAME, render_mode=None)
        actions["valid"] = env.data.valid_actions()
        actions["filtered"] = [env.data.filter_action(m) for m in range(1 << 12)]
        env.reset()
        run = {"screens": [], "variables": [], "rewards": [], "dones": []}
        for mask in masks:
            buttons = ((mask >> np.arange(12)) & 1).astype(np.uint8)
            obs, reward, done, _, info = env.step(buttons)
            run["screens"].append(_digest(obs))
            run["variables"].append(dict(info))
            run["rewards"].append(float(reward))
            run["dones"].append(bool(done))
        env.close()
        del env
        runs.append(run)
    return runs, actions


@pytest.fixture(scope="module")
def retro() -> tuple[list[dict], dict]:
    """stable-retro's runs of the sequences seeded 0, 1 and 2, and its action filtering."""
    with ProcessPoolExecutor(1, mp_context=mp.get_context("spawn")) as ex:
        return ex.submit(_retro_runs, [_masks(seed) for seed in range(3)]).result(timeout=300)


@pytest.fixture(scope="module")
def reference(retro) -> list[dict]:
    """stable-retro's run of each of the sequences seeded 0, 1 and 2."""
    return retro[0]


def _libretro_runs(count: int, draw_every: int = 1, shortcuts: bool = False) -> list[dict]:
    """``count`` libretro emulators in this process, stepped in turn, frame by frame.

    Only every ``draw_every``-th frame is drawn and looked at (``None`` for the others);
    ``shortcuts``: with the headless frame and the silent FM chip, where the core allows them.
    """
    setup = resolve(GAME)
    emulators = [
        LibretroEmulator(setup, skip_rendering=shortcuts, skip_audio=shortcuts)
        for _ in range(count)
    ]
    try:
        runs, scenarios = [], []
        for emu in emulators:
            emu.start()
            scenario = VariableScenario(setup.scenario_plan)
            scenario.start(emu.variables())
            scenarios.append(scenario)
            runs.append({"screens": [], "variables": [], "rewards": [], "dones": []})
        sequences = [_masks(seed) for seed in range(count)]
        for frame in range(FRAMES):
            for emu, scenario, run, masks in zip(emulators, scenarios, runs, sequences):
                draw = frame % draw_every == draw_every - 1
                emu.press(emu.data.filter_action(masks[frame]))
                emu.frame(draw)
                values = emu.variables()
                reward, done = scenario.evaluate(values)
                run["screens"].append(_digest(emu.screen()) if draw else None)
                run["variables"].append(values)
                run["rewards"].append(float(reward))
                run["dones"].append(bool(done))
        return runs
    finally:
        for emu in emulators:
            emu.close()


def _assert_same_run(got: dict, want: dict, which: str) -> None:
    for key in ("screens", "variables", "rewards", "dones"):
        pairs = enumerate(zip(got[key], want[key]))
        mismatch = next((f for f, (g, w) in pairs if g is not None and g != w), None)
        assert mismatch is None, f"{which}: {key} differ from stable-retro's at frame {mismatch}"


def test_one_emulator_matches_plain_stable_retro_frame_by_frame(reference):
    (run,) = _libretro_runs(1)
    assert sum(run["rewards"]) > 0, "the sequence should score, or rewards prove nothing"
    assert len(set(run["screens"])) > FRAMES // 2
    _assert_same_run(run, reference[0], "emulator 0")


@pytest.mark.parametrize("count", [2, 3])
def test_several_emulators_in_one_process_each_match_their_own_reference(reference, count):
    # Different buttons per emulator: a global shared between copies would show as a mismatch.
    runs = _libretro_runs(count)
    assert len({tuple(r["screens"]) for r in runs}) == count
    for k, run in enumerate(runs):
        _assert_same_run(run, reference[k], f"emulator {k} of {count}")


def test_undrawn_frames_and_the_silent_fm_chip_per_copy_change_nothing(reference):
    # Each copy finds its own entry points (its own load address) and polls its own buttons
    # while it runs a frame without its picture.
    runs = _libretro_runs(3, draw_every=4, shortcuts=True)
    for k, run in enumerate(runs):
        assert sum(s is not None for s in run["screens"]) == FRAMES // 4
        _assert_same_run(run, reference[k], f"emulator {k} of 3, drawing every 4th frame")


def test_each_copy_takes_the_genesis_shortcuts_of_its_own():
    setup = resolve(GAME)
    known_build = (
        headless._file_sha256(os.path.realpath(stable_retro_core_path()))
        in headless.YM2612_MODE_OFFSET
    )
    emulators = [LibretroEmulator(setup) for _ in range(2)]
    try:
        for emu in emulators:
            assert emu.skips_drawing
            assert emu.skips_audio == known_build
            emu.start()
        for _ in range(30):
            for emu in emulators:
                emu.frame(draw=False)
        if known_build:
            # Each copy counts the updates of its own chip that it silenced.
            assert [emu.core.fm_calls()[0] > 0 for emu in emulators] == [True, True]
    finally:
        for emu in emulators:
            emu.close()
    off = LibretroEmulator(setup, skip_rendering=False, skip_audio=False)
    try:
        assert not off.skips_drawing and not off.skips_audio
    finally:
        off.close()


@pytest.mark.parametrize("simd", [True, False])
@pytest.mark.parametrize("width", [1, 7, 15, 16, 17, 23, 24, 320])
def test_rgb565_converts_as_stable_retros_get_screen(width, simd):
    pixels = np.random.default_rng(width).integers(0, 1 << 16, (5, width), dtype=np.uint16)
    # src/imageops.cpp image565To888: the high bits of each channel, the low bits zero.
    want = np.stack(
        [(pixels & 0xF800) >> 8, (pixels & 0x07E0) >> 3, (pixels & 0x001F) << 3], axis=-1
    ).astype(np.uint8)
    out = np.full((5, width, 3), 7, np.uint8)
    assert rgb565_to_rgb_into(pixels, out, simd) is out
    np.testing.assert_array_equal(out, want)


def test_the_compiled_decoder_decodes_as_the_numba_one():
    # Every type stable-retro's Genesis and Atari integrations use, at even and odd addresses,
    # through the Genesis overlay; masks, signs, BCD.
    types = ["|u1", ">u2", ">u4", "|i1", ">i2", ">i4", "|d1", ">d2", ">d4", "<d4", ">d6"]
    types += [">d8", ">n4", ">n6", ">n8", "<u2", "<i4", "=u2", "><u4", "<>u4", ">=i4"]
    info = {f"v{k}": {"address": 0xFF0000 + 37 * k + k % 2, "type": t} for k, t in enumerate(types)}
    info["masked"] = {"address": 0xFF0010, "type": ">u4", "mask": 0x0F0F0F0F}
    info["negative_mask"] = {"address": 0xFF0011, "type": ">i2", "mask": -2}
    decoder = RamDecoder(info, 0xFF0000, 1 << 16, swap=1)
    rng = np.random.default_rng(0)
    for _ in range(5):
        ram = rng.integers(0, 256, 1 << 16, dtype=np.uint8)
        want = decoder.values_into(ram, np.zeros(len(decoder.names), np.int64))
        got = decode_plan_into(ram, decoder.plan, decoder.digits, np.zeros_like(want))
        np.testing.assert_array_equal(got, want)


def test_buttons_are_filtered_and_grouped_as_stable_retros_game_data(retro):
    emu = LibretroEmulator(resolve(GAME))
    try:
        assert emu.data.valid_actions() == retro[1]["valid"]
        assert [emu.data.filter_action(m) for m in range(1 << 12)] == retro[1]["filtered"]
    finally:
        emu.close()


def test_each_emulator_has_its_own_copy_of_the_core():
    setup = resolve(GAME)
    one, two = LibretroEmulator(setup), LibretroEmulator(setup)
    try:
        assert one.core.base_address != two.core.base_address
        assert one.ram().ctypes.data != two.ram().ctypes.data
    finally:
        one.close()
        two.close()


def test_each_copy_keeps_only_the_core_file_pages_it_still_reads():
    # The relocations, the relocated pointer tables' file pages and the symbol table are freed
    # once loaded; every other test of this module runs on what is left.
    emu = LibretroEmulator(resolve(GAME))
    try:
        size = os.path.getsize(stable_retro_core_path())
        assert emu.core.file_bytes() < size / 3
    finally:
        emu.close()


def test_a_closed_emulator_refuses_to_run_instead_of_calling_into_freed_code():
    emu = LibretroEmulator(resolve(GAME))
    emu.close()
    for call in (emu.frame, lambda: emu.frame(draw=False), emu.save_state):
        with pytest.raises(CoreError, match="no game is loaded"):
            call()


def test_the_ram_reads_as_stable_retros_memory_map():
    # data.json's "score" (>u4 at 16712270, 0xFF024E) through the core's byte-swapped words.
    emu = LibretroEmulator(resolve(GAME))
    try:
        emu.start()
        for mask in _masks(0):
            emu.press(emu.data.filter_action(mask))
            emu.frame()
        ram, score = emu.ram(), emu.variables()["score"]
        at = 16712270 - 0xFF0000
        big_endian = bytes(ram[(at + k) ^ 1] for k in range(4))
        assert score > 0 and int.from_bytes(big_endian, "big") == score
    finally:
        emu.close()


def test_save_state_and_load_state_go_back_to_the_same_frames():
    emu = LibretroEmulator(resolve(GAME))
    masks = _masks(5)
    try:
        emu.start()
        for mask in masks[:50]:
            emu.press(emu.data.filter_action(mask))
            emu.frame()
        state = emu.save_state()

        def play() -> list:
            seen = []
            for mask in masks[50:150]:
                emu.press(emu.data.filter_action(mask))
                emu.frame()
                seen.append((_digest(emu.screen()), emu.variables()))
            return seen

        first = play()
        emu.load_state(state)
        assert play() == first
        assert emu.save_state() != state
        with pytest.raises(
            InvalidArgumentError,
            match=re.escape(
                f"Expected a save state of {GAME} from save_state(), got 3 bytes that Genesis "
                "Plus GX does not accept"
            ),
        ):
            emu.load_state(b"bad")
    finally:
        emu.close()


def test_pools_of_two_emulators_per_worker_or_of_threads_match_the_stable_retro_backend():
    # And thread workers, which drive their emulators at once (the GIL is released while a
    # frame runs): each thread's callbacks reach its own emulators.
    actions = np.random.default_rng(3).integers(0, 2, (60, 4, 12)).astype(np.uint8)
    got = {}
    for backend, per_worker, workers in (
        ("stable-retro", 1, "processes"),
        ("libretro", 2, "processes"),
        ("libretro", 1, "threads"),
    ):
        with VecRetroEnv(
            GAME, 4, backend=backend, envs_per_worker=per_worker, frameskip=4, workers=workers
        ) as env:
            assert env.backends == (backend,) * 4
            assert env.pool_config.envs_per_worker == per_worker
            obs, _ = env.reset(seed=5)
            observations, rewards = [obs.copy()], []
            for a in actions:
                obs, reward, _, _, _ = env.step(a)
                observations.append(obs.copy())
                rewards.append(reward.copy())
        got[backend, workers] = np.array(observations), np.array(rewards)
    want = got["stable-retro", "processes"]
    assert want[1].sum() > 0
    for workers in ("processes", "threads"):
        np.testing.assert_array_equal(got["libretro", workers][0], want[0])
        np.testing.assert_array_equal(got["libretro", workers][1], want[1])


def test_pictures_written_in_place_are_the_copied_ones_across_episode_ends():
    # Unprocessed RGB observations: the libretro backend writes each picture straight into
    # shared memory (FrameWriter.direct_frame), stable-retro's worker copies it there. The
    # final observation of an episode and the reset's first must still be the right pictures.
    actions = np.random.default_rng(4).integers(0, 2, (12, 2, 12)).astype(np.uint8)
    got = {}
    for backend in ("stable-retro", "libretro"):
        with VecRetroEnv(
            GAME, 2, backend=backend, max_episode_steps=5, autoreset_mode="same_step"
        ) as env:
            obs, _ = env.reset(seed=1)
            seen, finals = [obs.copy()], []
            for a in actions:
                obs, _, _, truncated, infos = env.step(a)
                seen.append(obs.copy())
                if truncated.any():
                    finals.extend(
                        np.array(infos["final_obs"][i]) for i in np.flatnonzero(truncated)
                    )
        got[backend] = np.array(seen), np.array(finals)
    want = got["stable-retro"]
    assert len(want[1]) == 4  # two envs, two episode ends each
    np.testing.assert_array_equal(got["libretro"][0], want[0])
    np.testing.assert_array_equal(got["libretro"][1], want[1])
    # The pictures differ from step to step: the test compares frames, not a constant.
    assert len({a.tobytes() for a in want[0][:, 0]}) > 6


def test_auto_picks_libretro_for_genesis_and_says_why_where_it_does_not(tmp_path):
    with VecRetroEnv(GAME, 1, observe=False) as env:
        assert env.backends == ("libretro",)
        assert env.backend_why == "the libretro backend runs every env's game (Genesis)"
    lua = os.path.join(DATA, "zigzag.json")
    with VecRetroEnv(GAME, 1, observe=False, scenario=lua) as env:
        assert env.backends == ("stable-retro",)
        assert env.backend_why == (
            "the scenario needs stable-retro's own engine (the reward is computed by a Lua "
            f"script); ALE does not run {GAME} (not an Atari 2600 game)"
        )


@pytest.mark.parametrize(
    ("options", "why"),
    [
        (
            {"scenario": os.path.join(DATA, "zigzag.json")},
            "the scenario needs stable-retro's own engine (the reward is computed by a Lua script)",
        ),
        (
            {"scenario": "CROPS"},
            f"the scenario of {GAME} has per-player 'crops', which only stable-retro reads",
        ),
        (
            {"scenario_engine": "stable-retro"},
            "the scenario needs stable-retro's own engine (scenario_engine=stable-retro)",
        ),
    ],
)
def test_what_libretro_cannot_do_is_refused_with_the_reason(options, why, tmp_path):
    if options.get("scenario") == "CROPS":
        scenario = tmp_path / "crops.json"
        scenario.write_text(json.dumps({"crops": [[0, 0, 0, 0]], "reward": {}}))
        options = {**options, "scenario": str(scenario)}
    with pytest.raises(
        InvalidArgumentError, match=re.escape(f"Cannot run on the libretro backend: {why}")
    ):
        VecRetroEnv(GAME, 1, backend="libretro", **options)


def test_a_game_of_another_system_is_refused(monkeypatch):
    # Only the Genesis game ships with stable-retro: pretend it were a Super Nintendo game.
    monkeypatch.setattr(libretro, "game_system", lambda game: "Snes")
    why = (
        f"Cannot run on the libretro backend: {GAME} runs on Snes, and the libretro backend runs "
        "only Genesis (Mega Drive) games"
    )
    with pytest.raises(InvalidArgumentError, match=re.escape(why)):
        VecRetroEnv(GAME, 1, backend="libretro")
    with pytest.raises(
        InvalidArgumentError,
        match=re.escape(f"Cannot run {GAME} on the libretro backend: it runs on Snes, and the"),
    ):
        LibretroEmulator(resolve(GAME))


def test_a_game_whose_rom_stable_retro_lacks_is_refused():
    pytest.importorskip("ale_py", reason="ale-py ships the Atari ROMs stable-retro lacks")
    from fastretro.runtime.games import rom_imported

    if rom_imported("Pong-Atari2600-v0"):
        pytest.skip("Pong's ROM is imported into this stable-retro")
    with pytest.raises(
        InvalidArgumentError,
        match=re.escape(
            "Cannot run on the libretro backend: the ROM of Pong-Atari2600-v0 is not imported "
            "into stable-retro"
        ),
    ):
        VecRetroEnv("Pong-Atari2600-v0", 1, backend="libretro")


def _sequences_and_snapshots(backend: str) -> list:
    """Rewards, ends and steps of sequences and of a restored best snapshot, on ``backend``."""
    rng = np.random.default_rng(3)
    actions = rng.integers(0, 2, (40, 2, 8, 12), dtype=np.uint8)
    seen = []
    with VecRetroEnv(
        GAME,
        2,
        backend=backend,
        envs_per_worker=2 if backend == "libretro" else 1,
        observe=False,
        sequence_length=8,
        snapshot_best=True,
        frameskip=4,
        max_episode_steps=60,
    ) as env:
        env.reset(seed=5)
        for batch in actions:
            _, rewards, term, trunc, infos = env.step_sequences(batch, [8, 5])
            seen.append((rewards.tolist(), term.tolist(), trunc.tolist()))
            seen.append(infos["sequence_steps"].tolist())
        best = env.best_snapshot(0)
        seen.append((best.episode_step, best.episode_return))
        env.restore({1: best})
        for batch in actions[:5]:
            _, rewards, term, trunc, _ = env.step_sequences(batch, [3, 8])
            seen.append((rewards.tolist(), term.tolist(), trunc.tolist()))
    return seen


def test_sequences_and_snapshots_run_as_on_the_stable_retro_backend():
    # Two envs in one libretro worker against one stable-retro worker each: the same seeds,
    # actions, sequence lengths, episode caps and a best snapshot restored into the other env.
    expected = _sequences_and_snapshots("stable-retro")
    got = _sequences_and_snapshots("libretro")
    assert sum(sum(r[0]) for r in expected[::2][:40]) > 0  # the episodes scored something
    assert got == expected


def _movies(backend: str, folder) -> dict[str, dict[str, bytes]]:
    """The files inside each movie of two episodes of env 0 on ``backend``."""
    import zipfile

    actions = np.random.default_rng(4).integers(0, 2, (50, 1, 12), dtype=np.uint8)
    with VecRetroEnv(
        GAME, 1, backend=backend, record=str(folder), observe=False, max_episode_steps=20
    ) as env:
        env.reset(seed=0)
        for a in actions:
            env.step(a)
    movies = {}
    for path in sorted((folder / "env000").glob("*.bk2")):
        with zipfile.ZipFile(path) as z:
            movies[path.name] = {name: z.read(name) for name in sorted(z.namelist())}
    return movies


def test_movies_hold_the_bytes_stable_retro_writes(tmp_path):
    # The same names and files; the start state is the integration's, byte for byte.
    want = _movies("stable-retro", tmp_path / "stable-retro")
    got = _movies("libretro", tmp_path / "libretro")
    assert list(got) == [f"{GAME}-Level1-{n:06d}.bk2" for n in range(3)]
    assert got == want
