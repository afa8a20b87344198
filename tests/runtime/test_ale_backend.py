"""ALE behind the emulator seam: the game table, the RAM decoder, the action sets, AleEmulator.

They live in fastretro/runtime/backends/ale_games.py (the table, the action sets), ale_ram.py
(the decoder) and ale.py (the emulator); fastretro/tools/atari_data.py writes ALE's action sets.

stable-retro is the oracle: it runs in one subprocess per test session (it allows one emulator per
process, and this process must not create one), which writes what stable-retro itself holds and
computes (RAM bytes, ``lookup_all()``, ``filter_action``, rewards) for the tests to compare with.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys

import numpy as np
import pytest

ale_py = pytest.importorskip("ale_py")

from fastretro.errors import GameNotFoundError, InvalidArgumentError  # noqa: E402
from fastretro.runtime.backends import ale, ale_games, ale_ram  # noqa: E402
from fastretro.runtime.backends.base import Emulator  # noqa: E402
from fastretro.runtime.scenario import compile_scenario, player_scenario  # noqa: E402
from fastretro.tools import atari_data as data_tool  # noqa: E402

PONG = "Pong-Atari2600-v0"
BREAKOUT = "Breakout-Atari2600-v0"
# ALE's 18 action names in index order, from ale-py itself.
ALE_NAMES = tuple(sorted(ale_py.Action.__members__, key=lambda n: ale_py.Action[n].value))
# /work/shared/atari/README.md: the 32 integrations whose ROM ale-py 0.12.1 ships.
README_GAMES = sorted(
    f"{name}-Atari2600-v0"
    for name in (
        "Adventure AirRaid Alien Asterix Asteroids BeamRider Bowling Boxing Breakout "
        "ChopperCommand CrazyClimber ElevatorAction Enduro FishingDerby Freeway Frostbite Hero "
        "Jamesbond JourneyEscape Kangaroo MontezumaRevenge Phoenix Pong PrivateEye Qbert "
        "Robotank Seaquest Solaris StarGunner TimePilot UpNDown Zaxxon"
    ).split()
)
ROLLOUT_STEPS, FRAMES_PER_STEP = 60, 4
# The Pong policy: move player 1's paddle towards the ball, aiming this far above it. With -13
# both sides score within ~1,000 frames on both emulators (measured).
PONG_AIM, PONG_FRAMES = -13, 1100


# ---------------------------------------------------------------------------------------------
# The stable-retro oracle

ORACLE = r"""
import json, sys
import numpy as np
import stable_retro as retro

ALL = retro.data.Integrations.ALL
request = json.load(open(sys.argv[1]))
out = {}


def make(game, actions=retro.Actions.FILTERED):
    return retro.make(game, inttype=ALL, render_mode=None, use_restricted_actions=actions)


def press(env, combo):
    a = np.zeros(len(env.buttons), np.uint8)
    for b in combo:
        a[env.buttons.index(b)] = 1
    return a


# Random rollouts: the RAM stable-retro holds and its lookup_all() after every step.
rng = np.random.default_rng(0)
out["rollouts"] = {}
for game in request["games"]:
    env = make(game)
    env.reset(seed=0)
    rams, values = [], []
    for _ in range(request["steps"]):
        for _ in range(request["frames_per_step"]):
            env.step(rng.integers(0, 2, len(env.buttons)).astype(np.uint8))
        assert sorted(env.data.memory.blocks) == [0x80], env.data.memory.blocks.keys()
        rams.append(env.get_ram().tolist())
        values.append(env.data.lookup_all())
    out["rollouts"][game] = {"ram": rams, "values": values}
    env.close()

# Every type stable-retro reads, on RAM contents written into its emulator.
env = make(request["pong"]["game"], retro.Actions.ALL)
env.reset()
scenario = retro.data.get_file_path(request["pong"]["game"], "scenario.json", ALL)
out["filter_action"] = [env.data.filter_action(m) for m in range(256)]
assert env.data.load(request["types"]["data"], scenario)
out["types"] = []
for ram in request["types"]["rams"]:
    for i, value in enumerate(ram):
        env.data.memory.assign(0x80 + i, "|u1", value)
    assert env.get_ram().tolist() == ram
    out["types"].append(env.data.lookup_all())
rejected = retro.data.GameData()
out["rejected_loads"] = rejected.load(request["types"]["rejected"])
out["rejected_variables"] = rejected.list_variables()
env.close()

# Pong: player 1 (the first joystick) plays ALE's minimal actions through the pool's combos.
pong = request["pong"]
env = make(pong["game"], retro.Actions.ALL)
env.reset()
v = env.data.lookup_all()
out["pong"] = []
for _ in range(pong["frames"]):
    target = v["ball_y"] + pong["aim"]
    k = pong["up"] if v["p1_pos"] > target + 3 else pong["down"] if v["p1_pos"] < target - 3 else 0
    _, reward, _, _, v = env.step(press(env, pong["combos"][k]))
    out["pong"].append([reward, v["score1"], v["score2"], v["p1_pos"]])
out["pong_moves"] = []
for combo in pong["combos"]:
    env.reset()
    for _ in range(120):
        env.step(press(env, []))
    before = env.data.lookup_all()["p1_pos"]
    for _ in range(30):
        env.step(press(env, combo))
    out["pong_moves"].append(env.data.lookup_all()["p1_pos"] - before)
env.close()
json.dump(out, open(sys.argv[2], "w"))
"""


def synthetic_info(rng: np.random.Generator) -> dict:
    """Variables of every type stable-retro reads (and some it skips), at random addresses."""
    info = {}
    prefixes = [a + b for a in "|<>=" for b in ("", "<", ">", "=")]
    for prefix in prefixes:
        for repr_ in "uidnx":
            for width in range(9):
                address = int(rng.integers(0x80, 0x101 - max(width, 1)))
                var = {"address": address, "type": f"{prefix}{repr_}{width}"}
                if rng.random() < 0.3:
                    var["mask"] = int(rng.choice([0xF0, 0x7F, -113, 2**63 - 1, 0x5555]))
                info[f"{prefix}{repr_}{width}"] = var
    info.update(
        {
            "short": {"address": 0x90, "type": "u1"},
            "too_wide": {"address": 0x90, "type": "|u9"},
            "not_a_width": {"address": 0x90, "type": "|u:"},
            "below_ram": {"address": 0x7F, "type": "|u1"},
            "above_ram": {"address": 0x100, "type": "|u1"},
            "float_address": {"address": 200.7, "type": "<d2"},
        }
    )
    return info


def random_rams(rng: np.random.Generator) -> list[list[int]]:
    rams = [rng.integers(0, 256, 128) for _ in range(12)]
    rams += [np.full(128, v) for v in (0x00, 0xFF, 0x99, 0x80, 0x7F)]
    rams.append(rng.choice([0x09, 0x10, 0x99, 0xA5, 0x5A, 0xF0], 128))
    return [r.astype(int).tolist() for r in rams]


@pytest.fixture(scope="session")
def atari_roms():
    from fastretro.tools.roms import import_from_ale

    import_from_ale()  # idempotent; the oracle's stable-retro needs the ROMs


@pytest.fixture(scope="session")
def oracle(atari_roms, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ale_oracle")
    rng = np.random.default_rng(0)
    info = synthetic_info(rng)
    (tmp / "data.json").write_text(json.dumps({"info": info}))
    (tmp / "rejected.json").write_text(
        json.dumps({"info": {"ok": {"address": 0x80, "type": "|u1"}, "bad": {"address": 0x81}}})
    )
    combos = ale_games.action_set("ale_minimal", PONG)
    names = [ALE_NAMES[a] for a in ale_games.minimal_actions(PONG)]
    request = {
        "games": sorted(ale_games.game_table()),
        "steps": ROLLOUT_STEPS,
        "frames_per_step": FRAMES_PER_STEP,
        "types": {
            "data": str(tmp / "data.json"),
            "rejected": str(tmp / "rejected.json"),
            "rams": random_rams(rng),
        },
        "pong": {
            "game": PONG,
            "aim": PONG_AIM,
            "frames": PONG_FRAMES,
            "combos": combos,
            "up": names.index("RIGHT"),  # ALE's RIGHT raises the paddle (p1_pos falls)
            "down": names.index("LEFT"),
        },
    }
    (tmp / "request.json").write_text(json.dumps(request))
    run = subprocess.run(
        [sys.executable, "-c", ORACLE, str(tmp / "request.json"), str(tmp / "out.json")],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr
    out = json.loads((tmp / "out.json").read_text())
    out["request"] = request
    out["info"] = info
    return out


# ---------------------------------------------------------------------------------------------
# The game table


def test_game_table_finds_the_32_games_of_the_readme():
    table = ale_games.game_table()
    assert sorted(table) == README_GAMES
    assert table[PONG] == "pong"
    assert table["MontezumaRevenge-Atari2600-v0"] == "montezuma_revenge"
    assert ale_games.game_table() is table  # cached


def test_game_table_matches_rom_sha1s():
    import stable_retro.data as data

    shas = {rom: sha for sha, rom in ale_games.ale_rom_shas().items()}
    for game, rom in ale_games.game_table().items():
        path = data.get_file_path(game, "rom.sha", data.Integrations.ALL)
        with open(path) as f:
            assert shas[rom] in f.read().split()


def test_ale_rom_of_an_unknown_game_raises():
    with pytest.raises(GameNotFoundError, match="ALE cannot run 'Airstriker-Genesis-v0'"):
        ale_games.ale_rom("Airstriker-Genesis-v0")


# ---------------------------------------------------------------------------------------------
# The RAM decoder


def test_decoder_matches_stable_retro_on_every_game(oracle):
    rollouts = oracle["rollouts"]
    assert sorted(rollouts) == README_GAMES
    changed = 0
    for game, rollout in rollouts.items():
        decoder = ale_ram.RamDecoder(ale_games.game_info(game))
        assert decoder.skipped == {}, game
        previous = None
        for ram, expected in zip(rollout["ram"], rollout["values"]):
            got = decoder(np.array(ram, np.uint8))
            assert got == expected, game
            changed += previous is not None and got != previous
            previous = got
    assert changed > len(rollouts)  # the variables moved: the comparison is not of constants


def test_decoder_matches_stable_retro_on_every_type(oracle):
    decoder = ale_ram.RamDecoder(oracle["info"])
    assert set(decoder.skipped) == {
        "short",
        "too_wide",
        "not_a_width",
        "below_ram",
        "above_ram",
    }
    for ram, expected in zip(oracle["request"]["types"]["rams"], oracle["types"]):
        assert decoder(np.array(ram, np.uint8)) == expected


def test_decoder_rejects_a_file_with_a_variable_without_type_as_stable_retro(oracle):
    assert oracle["rejected_loads"] is False and oracle["rejected_variables"] == {}
    decoder = ale_ram.RamDecoder({"ok": {"address": 0x80, "type": "|u1"}, "bad": {"address": 0x81}})
    assert decoder.names == () and set(decoder.skipped) == {"ok", "bad"}
    assert decoder(np.zeros(128, np.uint8)) == {}


@pytest.mark.parametrize(
    ("type_", "data", "expected"),
    [
        ("|u1", [0xFE], 0xFE),
        ("|i1", [0xFE], -2),
        ("<u2", [0x34, 0x12], 0x1234),
        (">u2", [0x12, 0x34], 0x1234),
        (">i2", [0xFF, 0xFE], -2),
        ("|d1", [0x42], 42),
        (">d3", [0x12, 0x34, 0x56], 123456),
        ("<d3", [0x56, 0x34, 0x12], 123456),
        ("<n4", [4, 3, 2, 1], 1234),
        ("|d1", [0xAB], 0xB % 10 + 0xA % 10 * 10),  # nibbles above 9: modulo 10
        ("><u4", [0x34, 0x12, 0x78, 0x56], 0x12345678),  # high half first, each little-endian
        ("<>u4", [0x56, 0x78, 0x12, 0x34], 0x12345678),  # low half first, each big-endian
        ("<u8", [0xFF] * 8, -1),
    ],
)
def test_decoder_reads_types_as_stable_retro_does(type_, data, expected):
    ram = np.zeros(128, np.uint8)
    ram[10 : 10 + len(data)] = data
    decoder = ale_ram.RamDecoder({"v": {"address": 0x80 + 10, "type": type_}})
    assert decoder(ram) == {"v": expected}


def test_decoder_applies_the_mask_as_64_bits():
    ram = np.zeros(128, np.uint8)
    ram[0] = 0xFB
    decoder = ale_ram.RamDecoder(
        {
            "low": {"address": 0x80, "type": "|u1", "mask": 15},
            "signed": {"address": 0x80, "type": "|i1", "mask": -113},
        }
    )
    assert decoder(ram) == {"low": 0xB, "signed": -5 & -113}


def test_decoder_skips_a_variable_that_runs_past_ram():
    decoder = ale_ram.RamDecoder({"v": {"address": 0xFF, "type": "<u2"}})
    assert decoder.names == ()
    assert "past the end of RAM" in decoder.skipped["v"]


def test_decoder_rejects_a_ram_of_the_wrong_size():
    decoder = ale_ram.RamDecoder(ale_games.game_info(PONG))
    with pytest.raises(InvalidArgumentError, match=re.escape("Expected a RAM of shape (128,)")):
        decoder(np.zeros(64, np.uint8))
    with pytest.raises(InvalidArgumentError, match="and out of shape"):
        decoder.values_into(np.zeros(128, np.uint8), np.zeros(2, np.int64))


def test_decoder_values_into_writes_in_name_order():
    info = ale_games.game_info(PONG)
    decoder = ale_ram.RamDecoder(info)
    ram = np.arange(128, dtype=np.uint8)
    out = np.zeros(len(decoder.names), np.int64)
    assert decoder.values_into(ram, out) is out
    assert out.tolist() == [info[n]["address"] - 0x80 for n in decoder.names]


# ---------------------------------------------------------------------------------------------
# Action sets


def test_atari_data_matches_ale_itself(atari_roms):
    # Regenerates atari.json's content from ALE (and the stable-retro button probe).
    assert data_tool.build_atari_data() == ale_games.atari_data()


def test_write_data_writes_the_shipped_file(tmp_path, monkeypatch, capsys):
    # The shipped file is write_atari_data's output, byte for byte (the ALE side is tested above).
    monkeypatch.setattr(
        data_tool, "build_atari_data", lambda: json.loads(json.dumps(ale_games.atari_data()))
    )
    path = tmp_path / "atari.json"
    assert data_tool.main(["--path", str(path)]) == 0
    assert path.read_bytes() == ale_games.data_path().read_bytes()
    assert capsys.readouterr().out == f"wrote {path}: ALE's 18 actions, 32 games\n"


def test_full_set_is_ales_18_actions():
    combos = dict(zip(ALE_NAMES, ale_games.action_set("ale_full")))
    assert len(combos) == 18
    assert combos["NOOP"] == ()
    assert combos["FIRE"] == ("BUTTON",)
    assert combos["UPFIRE"] == ("UP", "BUTTON")
    assert combos["DOWNLEFTFIRE"] == ("DOWN", "LEFT", "BUTTON")
    assert ale_games.action_set("ale_full", BREAKOUT) == ale_games.action_set("ale_full")


def test_minimal_sets_are_ales():
    ale_py.ALEInterface.setLoggerMode(ale_py.LoggerMode.Error)
    emulator = ale_py.ALEInterface()
    emulator.loadROM(str(ale_games.ale_rom_path("breakout")))
    expected = [a.value for a in emulator.getMinimalActionSet()]
    assert list(ale_games.minimal_actions(BREAKOUT)) == expected
    assert ale_games.action_set("ale_minimal", BREAKOUT) == (
        (),
        ("BUTTON",),
        ("RIGHT",),
        ("LEFT",),
    )


def test_pong_actions_are_in_stable_retros_pong_buttons():
    # ALE moves Pong's paddle with RIGHT/LEFT, stable-retro's Stella core with UP/DOWN.
    assert ale_games.action_set("ale_minimal", PONG) == (
        (),
        ("BUTTON",),
        ("UP",),
        ("DOWN",),
        ("UP", "BUTTON"),
        ("DOWN", "BUTTON"),
    )
    table = ale_games.mask_to_ale_table(PONG)
    assert ALE_NAMES[table[ale_games.combo_mask(["UP"])]] == "RIGHT"
    assert ALE_NAMES[table[ale_games.combo_mask(["DOWN", "BUTTON"])]] == "LEFTFIRE"
    # LEFT moves the other paddle in stable-retro: no ALE action.
    assert ALE_NAMES[table[ale_games.combo_mask(["LEFT"])]] == "NOOP"


def test_unknown_action_set_raises():
    with pytest.raises(InvalidArgumentError, match=r"Expected an action set in \['ale_full'"):
        ale_games.action_set("sonic7", PONG)
    with pytest.raises(GameNotFoundError, match="No ALE minimal action set"):
        ale_games.action_set("ale_minimal", "Airstriker-Genesis-v0")


@pytest.mark.parametrize("game", [None, BREAKOUT, PONG])
def test_mask_table_means_what_stable_retros_filter_makes_of_a_mask(oracle, game):
    table = ale_games.mask_to_ale_table(game)
    assert table.shape == (256,) and table.dtype == np.int64 and not table.flags.writeable
    combos = ale_games.action_set("ale_full", game)
    for mask, filtered in enumerate(oracle["filter_action"]):
        assert table[mask] == table[filtered]
        if game != PONG:  # Pong's LEFT/RIGHT have no ALE action
            assert ale_games.combo_mask(combos[table[mask]]) == filtered


@pytest.mark.parametrize("game", [None, PONG])
def test_every_ale_action_round_trips_through_its_mask(game):
    table = ale_games.mask_to_ale_table(game)
    combos = ale_games.action_set("ale_full", game)
    for action, combo in enumerate(combos):
        back = table[ale_games.combo_mask(combo)]
        assert combos[back] == combo  # the same buttons (in Pong, UPRIGHT is RIGHT)
        if game is None:
            assert back == action


def test_pong_combos_move_player_1s_paddle_alike_on_both_emulators(oracle):
    moves = []
    for combo in ale_games.action_set("ale_minimal", PONG):
        em = ale.AleEmulator(PONG)
        em.start()
        for _ in range(120):
            em.frame()
        before = em.variables()["p1_pos"]
        em.press(ale_games.combo_mask(combo))
        for _ in range(30):
            em.frame()
        moves.append(em.variables()["p1_pos"] - before)
    retro = oracle["pong_moves"]
    assert np.sign(moves).tolist() == np.sign(retro).tolist() == [0, 0, -1, 1, -1, 1]


# ---------------------------------------------------------------------------------------------
# AleEmulator


@pytest.fixture
def pong():
    em = ale.AleEmulator(PONG)
    em.start()
    yield em
    em.close()


def raw_ale(rom: str) -> ale_py.ALEInterface:
    emulator = ale_py.ALEInterface()
    emulator.setInt("random_seed", 0)
    emulator.setFloat("repeat_action_probability", 0.0)
    emulator.setInt("frame_skip", 1)
    emulator.loadROM(str(ale_games.ale_rom_path(rom)))
    return emulator


def test_emulator_implements_the_seam(pong):
    import stable_retro.data

    assert isinstance(pong, Emulator)
    assert pong.backend == "ale" and pong.skips_drawing is False
    retro_buttons = stable_retro.data.EMU_INFO["Atari2600"]["buttons"]
    assert pong.buttons == tuple(b or "" for b in retro_buttons)
    assert pong.rom == "pong"


def test_emulator_is_a_bare_ale(pong):
    assert pong._ale.getFloat("repeat_action_probability") == 0.0
    assert pong._ale.getInt("frame_skip") == 1
    assert ale.AleEmulator(PONG, seed=7)._ale.getInt("random_seed") == 7
    with pytest.raises(InvalidArgumentError, match="Expected seed to be an int"):
        ale.AleEmulator(PONG, seed=-1)


def test_emulator_of_a_game_ale_does_not_run_raises():
    with pytest.raises(GameNotFoundError, match="ALE cannot run"):
        ale.AleEmulator("Airstriker-Genesis-v0")


@pytest.mark.parametrize("game", [BREAKOUT, "Seaquest-Atari2600-v0"])
def test_press_and_frame_play_alike_a_raw_ale(game):
    # The same random masks through press() and the ALE actions they stand for, frame by frame.
    em = ale.AleEmulator(game)
    em.start()
    reference = raw_ale(ale_games.ale_rom(game))
    reference.reset_game()
    table = ale_games.mask_to_ale_table(game)
    rewards = []
    for mask in np.random.default_rng(1).integers(0, 256, 600):
        em.press(int(mask))
        em.frame()
        rewards.append(reference.act(ale_py.Action(int(table[mask]))))
        assert em.reward == rewards[-1]
        np.testing.assert_array_equal(em.ram(), reference.getRAM())
    np.testing.assert_array_equal(em.screen(), reference.getScreenRGB())


def test_screen_is_rgb_into_one_buffer(pong):
    for _ in range(100):
        pong.frame()
    screen = pong.screen()
    assert screen.shape == (210, 160, 3) and screen.dtype == np.uint8
    np.testing.assert_array_equal(screen, pong._ale.getScreenRGB())
    # Two buffers in turn: a picture stays valid while the worker takes the next (max-pool).
    kept = screen.copy()
    pong.frame()
    other = pong.screen()
    assert not np.shares_memory(other, screen)
    np.testing.assert_array_equal(screen, kept)
    assert pong.screen() is screen  # the first buffer again, refilled


def test_screen_gray_is_ales_grayscale(pong):
    for _ in range(100):
        pong.frame()
    gray = pong.screen_gray()
    assert gray.shape == (210, 160) and gray.dtype == np.uint8
    np.testing.assert_array_equal(gray, pong._ale.getScreenGrayscale())
    other = pong.screen_gray()
    assert other is not gray and pong.screen_gray() is gray  # two buffers in turn


def test_screen_into_and_screen_gray_into_write_the_given_buffers(pong):
    for _ in range(100):
        pong.frame()
    rgb = np.zeros((210, 160, 3), np.uint8)
    gray = np.zeros((210, 160), np.uint8)
    assert pong.screen_into(rgb) is rgb and pong.screen_gray_into(gray) is gray
    np.testing.assert_array_equal(rgb, pong.screen())
    np.testing.assert_array_equal(gray, pong.screen_gray())
    with pytest.raises(RuntimeError, match="Invalid shape"):
        pong.screen_into(np.zeros((100, 160, 3), np.uint8))


@pytest.mark.parametrize("game", [PONG, "Seaquest-Atari2600-v0", "Enduro-Atari2600-v0"])
def test_ales_gray_is_the_luma_of_its_rgb(game):
    from fastretro.runtime.kernels import rgb_to_gray_into

    em = ale.AleEmulator(game)
    em.start()
    luma = np.zeros((210, 160), np.uint8)
    rng = np.random.default_rng(3)
    for t in range(1200):
        em.press(int(rng.integers(256)))
        em.frame()
        if t % 100 == 99:
            rgb_to_gray_into(em.screen(), luma)
            np.testing.assert_array_equal(em.screen_gray(), luma)


def test_screen_codes_are_ales_and_the_palette_turns_them_into_its_gray(pong):
    for _ in range(100):
        pong.frame()
    codes = pong.screen_codes()
    assert codes.shape == (210, 160) and codes.dtype == np.uint8
    np.testing.assert_array_equal(codes, pong._ale.getScreen())
    np.testing.assert_array_equal(pong.gray_palette[codes], pong.screen_gray())
    # Each kind of picture keeps its own pair of buffers: an RGB screen taken between a
    # max-pool's two frames does not refill the codes kept from the first.
    kept = codes.copy()
    pong.frame()
    pong.screen()
    other = pong.screen_codes()
    assert not np.shares_memory(other, codes)
    np.testing.assert_array_equal(codes, kept)


@pytest.mark.parametrize("game", README_GAMES)
def test_every_games_palette_is_found_and_gives_ales_gray(game):
    # Found on the loaded ROM's first frame; then right on every frame of a random rollout.
    em = ale.AleEmulator(game)
    assert em.gray_palette is not None and em.gray_palette.shape == (256,)
    em.start()
    rng = np.random.default_rng(4)
    for t in range(300):
        em.press(int(rng.integers(256)))
        em.frame()
        if t % 30 == 29:
            np.testing.assert_array_equal(em.gray_palette[em.screen_codes()], em.screen_gray())
        if em.game_over():
            em.start()


def test_identify_palette_tells_the_three_apart_or_says_it_cannot():
    from fastretro.runtime.backends.ale_palettes import PALETTES, gray_table, identify_palette

    codes = np.arange(0, 256, 2, dtype=np.uint8).reshape(8, 16)
    for name in PALETTES:
        assert identify_palette(codes, gray_table(name)[codes]) == name
    black = np.zeros((210, 160), np.uint8)
    assert identify_palette(black, black) is None  # black is black in every palette
    assert identify_palette(codes, np.full_like(codes, 7)) is None  # no palette agrees


@pytest.mark.parametrize(
    ("game", "shape"),
    # stable-retro's Stella shows these games at the same sizes (measured with stable_retro.make).
    [
        (PONG, (210, 160)),
        ("JourneyEscape-Atari2600-v0", (230, 160)),
        ("Adventure-Atari2600-v0", (250, 160)),
        ("AirRaid-Atari2600-v0", (250, 160)),
    ],
)
def test_screens_have_the_games_own_size(game, shape):
    em = ale.AleEmulator(game)
    em.start()
    em.frame()
    assert em.screen_shape == shape
    assert em.screen().shape == (*shape, 3)
    assert em.screen_gray().shape == em.screen_codes().shape == shape
    assert em.window() == (0, 0, *shape)


def test_variables_are_the_decoded_ram(pong):
    for _ in range(300):
        pong.frame()
    variables = pong.variables()
    assert set(variables) == set(ale_games.game_info(PONG))
    ram = pong._ale.getRAM()
    assert variables == {
        n: int(ram[v["address"] - 0x80]) for n, v in ale_games.game_info(PONG).items()
    }


def test_start_is_ales_reset_and_deterministic():
    one, two = ale.AleEmulator(PONG), ale.AleEmulator(PONG)
    one.start()
    two.start()
    reference = raw_ale("pong")
    reference.reset_game()
    np.testing.assert_array_equal(one.ram(), reference.getRAM())
    first = one.ram().copy()
    one.press(ale_games.combo_mask(["UP"]))
    for _ in range(200):
        one.frame()
    one.start()  # again: the same start, nothing pressed
    np.testing.assert_array_equal(one.ram(), first)
    np.testing.assert_array_equal(two.ram(), first)
    one.frame()
    two.frame()
    np.testing.assert_array_equal(one.screen(), two.screen())


def test_save_and_load_state_round_trip_exactly(pong):
    masks = np.random.default_rng(2).integers(0, 256, 300)
    for mask in masks[:100]:
        pong.press(int(mask))
        pong.frame()
    state = pong.save_state()
    assert isinstance(state, bytes)

    def play():
        rams, screens, rewards = [], [], []
        for mask in masks[100:]:
            pong.press(int(mask))
            pong.frame()
            rams.append(pong.ram().copy())
            screens.append(pong.screen().copy())
            rewards.append(pong.reward)
        return np.array(rams), np.array(screens), rewards

    first = play()
    pong.load_state(state)
    assert pong.save_state() == state
    second = play()
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)


def test_state_loads_into_another_emulator(pong):
    for _ in range(150):
        pong.frame()
    other = ale.AleEmulator(PONG, seed=3)
    other.start()
    other.load_state(pong.save_state())
    np.testing.assert_array_equal(other.ram(), pong.ram())
    for em in (pong, other):
        em.press(ale_games.combo_mask(["UP"]))
        for _ in range(50):
            em.frame()
    np.testing.assert_array_equal(other.screen(), pong.screen())


def test_load_state_of_another_game_raises_and_leaves_the_emulator(pong):
    for _ in range(50):
        pong.frame()
    before = pong.save_state()
    breakout = ale.AleEmulator(BREAKOUT)
    breakout.start()
    with pytest.raises(InvalidArgumentError, match=f"Expected a state of {PONG}"):
        pong.load_state(breakout.save_state())
    with pytest.raises(InvalidArgumentError, match="ALE does not accept"):
        pong.load_state(b"not a state")
    assert pong.save_state() == before


def test_several_emulators_in_one_process_are_independent():
    games = [PONG, BREAKOUT, PONG]
    together = [ale.AleEmulator(g) for g in games]
    masks = np.random.default_rng(4).integers(0, 256, (200, len(games)))
    for em in together:
        em.start()
    for row in masks:  # interleaved, frame by frame
        for em, mask in zip(together, row):
            em.press(int(mask))
            em.frame()
    for k, game in enumerate(games):
        alone = ale.AleEmulator(game)
        alone.start()
        for mask in masks[:, k]:
            alone.press(int(mask))
            alone.frame()
        np.testing.assert_array_equal(alone.ram(), together[k].ram())
        np.testing.assert_array_equal(alone.screen(), together[k].screen())


def test_game_over_after_21_points_and_start_again(pong):
    frames = 0
    while not pong.game_over():
        pong.frame()  # nothing pressed: the computer scores 21
        frames += 1
        assert frames < 10_000
    assert max(pong.variables()["score1"], pong.variables()["score2"]) == 21
    pong.start()
    assert not pong.game_over() and pong.variables()["score1"] == 0


# ---------------------------------------------------------------------------------------------
# Reused resets: a game whose reset always reaches one state restores it


@pytest.mark.parametrize(
    "game, fixed",
    [
        (BREAKOUT, True),
        (PONG, True),
        ("BeamRider-Atari2600-v0", False),
        ("Qbert-Atari2600-v0", False),
    ],
)
def test_the_reset_probe_tells_fixed_resets_from_the_others(game, fixed):
    # BeamRider's start-up reads the RAM its last game left; Qbert's cartridge does not map its
    # banks back on a restore: the probe must see both.
    rom = ale_games.ale_rom(game)
    assert data_tool.reset_is_fixed(raw_ale(rom), raw_ale(rom)) is fixed
    assert ale_games.fixed_reset(game) is fixed  # what atari.json says


def test_state_without_clocks_refuses_what_is_not_an_ale_state():
    with pytest.raises(ValueError, match="^Expected an ALE state with a System section$"):
        data_tool.state_without_clocks(b"not a state")


@pytest.mark.parametrize("game", [BREAKOUT, PONG])
def test_a_reused_reset_plays_exactly_as_a_real_one(game):
    # The same random buttons on two emulators, one resetting for real, one restoring, with
    # starts at each game over and mid-game: every picture (the reset's own, before any frame,
    # included), RAM, reward, lives and end of game agree.
    real = ale.AleEmulator(game, reuse_reset=False)
    reused = ale.AleEmulator(game, reuse_reset=True)
    masks = ale_games.mask_to_ale_table(game).nonzero()[0]
    rng = np.random.default_rng(5)
    starts = 0

    def same_pictures():
        for kind in ("screen", "screen_gray", "screen_codes"):
            np.testing.assert_array_equal(getattr(real, kind)(), getattr(reused, kind)())
        h, w = real.screen_shape
        out = [np.empty((h, w, 3), np.uint8) for _ in range(2)]
        np.testing.assert_array_equal(real.screen_into(out[0]), reused.screen_into(out[1]))
        gray = [np.empty((h, w), np.uint8) for _ in range(2)]
        np.testing.assert_array_equal(
            real.screen_gray_into(gray[0]), reused.screen_gray_into(gray[1])
        )

    for frame in range(9000):
        if frame % 1500 == 0 or real.game_over():
            real.start()
            reused.start()
            starts += 1
            same_pictures()
            np.testing.assert_array_equal(real.ram(), reused.ram())
        mask = int(rng.choice(masks))
        real.press(mask)
        reused.press(mask)
        real.frame()
        reused.frame()
        assert (real.reward, real.lives(), real.game_over()) == (
            reused.reward,
            reused.lives(),
            reused.game_over(),
        )
        np.testing.assert_array_equal(real.ram(), reused.ram())
        np.testing.assert_array_equal(real.screen_codes(), reused.screen_codes())
    assert starts >= 6
    assert reused._reset_state is not None and real._reset_state is None


# ---------------------------------------------------------------------------------------------
# Pong: player 1's reward


def pong_plan():
    import stable_retro.data as data

    path = data.get_file_path(PONG, "scenario.json", data.Integrations.ALL)
    with open(path) as f:
        scenario = json.load(f)
    assert "rewards" in scenario
    plan, why = compile_scenario(player_scenario(scenario, 0), set(ale_games.game_info(PONG)))
    assert plan is not None, why
    return plan


def plan_reward(plan, previous: dict, now: dict) -> float:
    # stable-retro's RewardSpec on plain deltas (the only kind Pong's scenario uses).
    reward = plan.time_reward
    for (index, delta, op, _), (gain, penalty) in zip(plan.reward_terms, plan.reward_factors):
        assert delta == 1 and op == 0
        name = plan.names[index]
        measured = now[name] - previous[name]
        reward += measured * (gain if measured > 0 else penalty)
    return reward


def test_player_scenario_selects_player_1s_rewards():
    scenario = {"done": {}, "rewards": [{"variables": {"a": {}}}, {"variables": {"b": {}}}]}
    assert player_scenario(scenario) == {"done": {}, "reward": {"variables": {"a": {}}}}
    assert player_scenario(scenario, 1) == {"done": {}, "reward": {"variables": {"b": {}}}}
    assert "rewards" in scenario  # not modified
    assert player_scenario({"reward": {"time": {}}}) == {"reward": {"time": {}}}
    assert player_scenario({"reward": {"time": {}}}, 1) == {}
    with pytest.raises(InvalidArgumentError, match=r"Expected player in \[0, 2\)"):
        player_scenario(scenario, 2)


def test_player_scenario_merges_reward_and_rewards_as_stable_retro():
    # Scenario::load: "reward" first; rewards[0]'s variables only where the name is new
    # (emplace), its time and script replace.
    scenario = {
        "reward": {"variables": {"a": {"reward": 1.0}}, "time": {"reward": 1.0}},
        "rewards": [
            {"variables": {"a": {"reward": 5.0}, "b": {"reward": 2.0}}, "time": {"reward": 3.0}},
            {"variables": {"c": {}}},
        ],
    }
    assert player_scenario(scenario) == {
        "reward": {
            "variables": {"a": {"reward": 1.0}, "b": {"reward": 2.0}},
            "time": {"reward": 3.0},
        }
    }
    assert player_scenario(scenario, 1) == {"reward": {"variables": {"c": {}}}}


def test_pong_player_1s_reward_is_ales_reward():
    # On ALE: rewards[0], computed from the decoded RAM, equals act()'s reward on every frame.
    plan = pong_plan()
    em = ale.AleEmulator(PONG)
    em.start()
    combos = ale_games.action_set("ale_minimal", PONG)
    names = [ALE_NAMES[a] for a in ale_games.minimal_actions(PONG)]
    up, down = names.index("RIGHT"), names.index("LEFT")
    v = em.variables()
    events = []
    for _ in range(PONG_FRAMES):
        target = v["ball_y"] + PONG_AIM
        k = up if v["p1_pos"] > target + 3 else down if v["p1_pos"] < target - 3 else 0
        em.press(ale_games.combo_mask(combos[k]))
        em.frame()
        now = em.variables()
        assert plan_reward(plan, v, now) == em.reward
        if em.reward:
            events.append((em.reward, now["score2"] - v["score2"], now["score1"] - v["score1"]))
        v = now
    assert (1, 1, 0) in events and (-1, 0, 1) in events  # player 1 scored, and was scored on
    assert set(events) == {(1, 1, 0), (-1, 0, 1)}


def test_pong_player_1s_reward_means_the_same_on_stable_retro(oracle):
    # The same policy through the same combos on stable-retro: its player-1 reward
    # (current_reward(0), i.e. rewards[0]) is +1 exactly when player 1's paddle scores
    # (score2) and -1 when the computer does (score1), as ALE's reward above.
    plan = pong_plan()
    rows = oracle["pong"]
    events = []
    for (_, s1, s2, _), (reward, t1, t2, _) in zip(rows, rows[1:]):
        previous, now = {"score1": s1, "score2": s2}, {"score1": t1, "score2": t2}
        assert reward == plan_reward(plan, previous, now)
        if reward:
            events.append((reward, t2 - s2, t1 - s1))
    assert (1, 1, 0) in events and (-1, 0, 1) in events
    assert set(events) == {(1, 1, 0), (-1, 0, 1)}
