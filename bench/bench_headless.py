"""What a frame costs drawn (``em.step``) and undrawn, with and without FM sound, in one process.

fastretro/runtime/headless.py: a frame can run without its picture (``skip_rendering``) and the
FM chip without its sound (``skip_audio``). All four ways run the same random buttons from the same
state; the per-frame time is the best of 5 repeats of 400 frames, alternating the ways 3
times. Run: ``python bench/bench_headless.py``
"""

from __future__ import annotations

import argparse
import ctypes
import multiprocessing as mp
import platform
import timeit
from concurrent.futures import ProcessPoolExecutor

import numpy as np

from fastretro import DEFAULT_GAME


def _measure(game: str, rounds: int, frames: int) -> list[tuple[float, float]]:
    import stable_retro

    from fastretro.runtime._ext import worker_loop
    from fastretro.runtime.headless import AUDIO_SCRATCH_VALUES, find_headless_frame, find_silent_fm

    env = stable_retro.make(game, render_mode=None)
    env.reset(seed=0)
    em = env.em
    headless = find_headless_frame()
    if headless is None:
        raise SystemExit(f"{game}: its core cannot run a frame without drawing it")
    silent = find_silent_fm()
    if silent is None:
        raise SystemExit(f"{game}: its core's FM chip cannot run without its sound")
    frame_gen = ctypes.CFUNCTYPE(None, ctypes.c_int)(headless.frame_gen)
    audio_update = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p)(headless.audio_update)
    scratch = np.zeros(AUDIO_SCRATCH_VALUES, np.int16)  # kept alive: the core writes into it
    masks = np.random.default_rng(0).integers(0, 2, (frames, 12), dtype=np.uint8)
    start = em.get_state()
    slot = ctypes.c_void_p.from_address(silent.slot)
    worker_loop.install_silent_fm(silent)
    silent_update = slot.value

    def drawn():
        em.set_state(start)
        for m in masks:
            em.set_button_mask(m, 0)
            em.step()

    def undrawn():
        em.set_state(start)
        for m in masks:
            em.set_button_mask(m, 0)
            frame_gen(1)
            audio_update(scratch.ctypes.data)

    def per_frame_us(run, fm_sound):
        slot.value = silent.update if fm_sound else silent_update
        return min(timeit.repeat(run, number=1, repeat=5)) / frames * 1e6

    out = [
        {
            (draw, sound): per_frame_us(run, sound)
            for sound in (True, False)
            for draw, run in (("drawn", drawn), ("undrawn", undrawn))
        }
        for _ in range(rounds)
    ]
    env.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--game", default=DEFAULT_GAME)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--frames", type=int, default=400)
    args = parser.parse_args()
    # No emulator in this process; a crash in the child raises here instead of hanging.
    with ProcessPoolExecutor(1, mp_context=mp.get_context("spawn")) as ex:
        rounds = ex.submit(_measure, args.game, args.rounds, args.frames).result()
    print(f"{args.game}, {platform.processor() or platform.machine()}, us per frame:")
    print(
        "| round | drawn (em.step) | undrawn | drawn, no FM sound | undrawn, no FM sound "
        "| undrawn / drawn | no FM sound / with (drawn, undrawn) |"
    )
    print("|---|---|---|---|---|---|---|")
    for i, r in enumerate(rounds, 1):
        d, u = r[("drawn", True)], r[("undrawn", True)]
        ds, us = r[("drawn", False)], r[("undrawn", False)]
        print(
            f"| {i} | {d:.1f} | {u:.1f} | {ds:.1f} | {us:.1f} | {u / d:.2f} "
            f"| {ds / d:.2f}, {us / u:.2f} |"
        )


if __name__ == "__main__":
    main()
