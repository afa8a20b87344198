"""What one agent step of the standard Atari protocol costs on ALE emulators in one process.

The protocol (Machado et al., 2018): 4 frames a step, the last two screens max-pooled, 84x84
gray; here also the integration's RAM variables decoded every step (``info``). K
``AleEmulator``s (fastretro/runtime/backends/ale.py) are stepped in turn by one thread, as one
worker process would, with a random button mask a step; each part is timed inside the loop:

- ``act x4``: 4 ``press`` + ``frame`` (ALE's ``act``);
- ``screens``: the two pooled frames grabbed into the worker's buffers (``screen_into`` RGB,
  ``screen_gray_into``: ALE's own gray, or ``screen_codes``: its colour codes, what the
  workers read);
- ``resize``: max-pool + gray + 84x84 area resize: ``kernels.gray_area_resize_into`` on RGB,
  on ALE's gray frames a gray-input kernel of the same arithmetic (below), or on the colour
  codes the workers' ``kernels.palette_area_resize_into`` (the gray looked up in ALE's
  palette as it resizes);
- ``ram``: ``variables()`` (``getRAM`` + the decoder + the dict).

The parts are timed in this thread's CPU time (``time.thread_time_ns``), which a shared
machine's load inflates far less than wall time; frames/s are given by both. The script also
measures the bare ``act`` rate of one emulator, and K emulators stepped by K threads: ale-py's
``act`` binding does not release the GIL (src/ale/python/ale_python_interface.hpp), so threads
interleave rather than add cores; on a loaded machine more runnable threads can still win a
larger share of the CPU, the only way that figure can beat one thread. Frames are counted as
steps x 4.
Run: ``python bench/bench_ale_worker.py [--game G] [--envs K] [--steps N] [--repeat R]``;
the last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import threading
import time
import timeit

import numba
import numpy as np

from fastretro.runtime import kernels
from fastretro.runtime.backends.ale import AleEmulator, ale_rom, decode_ram_into
from fastretro.runtime.games import game_id

SIZE = 84
FRAMES_PER_STEP = 4
PATHS = ("rgb", "ale", "codes")


@numba.njit(cache=True, nogil=True, boundscheck=False)
def gray_max_area_resize_into(a, b, ty, tx, out):
    """max(a, b) of two uint8 (H, W) gray frames, area-resized into uint8 (h, w) ``out``.

    The same float32 arithmetic as ``kernels.gray_area_resize_into`` (OpenCV's INTER_AREA
    weights; each source row added, weighted, into the one or two output rows it overlaps, then
    each output row reduced along x tap by tap), on one channel. The loops run along rows so
    that LLVM can vectorize them.
    """
    h, w = out.shape
    rows = np.zeros((h, a.shape[1]), np.float32)
    line = np.empty(a.shape[1], np.float32)
    for y in range(a.shape[0]):
        for x in range(a.shape[1]):
            line[x] = np.float32(max(a[y, x], b[y, x]))
        d0, w0, d1, w1 = ty.dst0[y], ty.weight0[y], ty.dst1[y], ty.weight1[y]
        for x in range(a.shape[1]):
            rows[d0, x] += w0 * line[x]
        if w1 != 0:
            for x in range(a.shape[1]):
                rows[d1, x] += w1 * line[x]
    acc = np.empty(w, np.float32)
    for i in range(h):
        acc[:] = 0
        for k in range(tx.taps.shape[0]):
            for j in range(w):
                acc[j] += tx.taps[k, j] * rows[i, tx.index[k, j]]
        for j in range(w):
            out[i, j] = np.uint8(min(np.int32(acc[j] + np.float32(0.5)), 255))


class Worker:
    """K emulators and the buffers one worker process would hold for them."""

    def __init__(self, game: str, envs: int, gray: str, seed: int = 0) -> None:
        self.ems = [AleEmulator(game, seed=seed + k) for k in range(envs)]
        self.gray = gray
        shape = (210, 160) if gray != "rgb" else (210, 160, 3)
        self.frames = np.zeros((envs, 2, *shape), np.uint8)
        self.obs = np.zeros((envs, SIZE, SIZE, 1), np.uint8)
        self.ty, self.tx = kernels.area_table(210, SIZE), kernels.area_table(160, SIZE)
        self.masks = np.random.default_rng(seed).integers(0, 256, 1 << 16).tolist()
        self.t = 0
        for em in self.ems:
            em.start()

    def step(self, k: int, clock: list[int] | None) -> None:
        """One agent step of emulator ``k``; adds each part's ns to ``clock`` if given."""
        em, frames, now = self.ems[k], self.frames[k], time.thread_time_ns
        t0 = now() if clock is not None else 0
        em.press(self.masks[self.t & 0xFFFF])
        self.t += 1
        em.frame()
        em.frame()
        em.frame()
        t1 = now() if clock is not None else 0
        if self.gray == "codes":
            before = em.screen_codes()
        else:
            grab = em.screen_gray_into if self.gray == "ale" else em.screen_into
            grab(frames[0])
        t2 = now() if clock is not None else 0
        em.frame()
        t3 = now() if clock is not None else 0
        if self.gray == "codes":
            last = em.screen_codes()
        else:
            grab(frames[1])
        t4 = now() if clock is not None else 0
        if self.gray == "codes":
            kernels.palette_area_resize_into(
                last, before, True, em.gray_palette, 0, 0, self.ty, self.tx, self.obs[k]
            )
        elif self.gray == "ale":
            gray_max_area_resize_into(frames[1], frames[0], self.ty, self.tx, self.obs[k, :, :, 0])
        else:
            kernels.gray_area_resize_into(
                frames[1], frames[0], True, 0, 0, self.ty, self.tx, self.obs[k]
            )
        t5 = now() if clock is not None else 0
        em.variables()
        t6 = now() if clock is not None else 0
        if em.game_over():
            em.start()
        if clock is not None:
            clock[0] += (t1 - t0) + (t3 - t2)
            clock[1] += (t2 - t1) + (t4 - t3)
            clock[2] += t5 - t4
            clock[3] += t6 - t5

    def run(self, steps: int, clock: list[int] | None = None) -> tuple[float, float]:
        """Step every emulator ``steps`` times in turn; return (wall, this thread's CPU) s."""
        wall, cpu = time.perf_counter(), time.thread_time()
        for _ in range(steps):
            for k in range(len(self.ems)):
                self.step(k, clock)
        return time.perf_counter() - wall, time.thread_time() - cpu


def check_gray_kernel(game: str) -> int:
    """The gray-input kernel's largest difference from the RGB kernel on the same gray frames.

    With R = G = B the RGB kernel's luma is the gray value itself, so both must agree exactly.
    """
    em = AleEmulator(game)
    em.start()
    a, b = np.zeros((210, 160), np.uint8), np.zeros((210, 160), np.uint8)
    ty, tx = kernels.area_table(210, SIZE), kernels.area_table(160, SIZE)
    out, ref = np.zeros((SIZE, SIZE), np.uint8), np.zeros((SIZE, SIZE, 1), np.uint8)
    rng = np.random.default_rng(0)
    worst = 0
    for t in range(1000):
        em.press(int(rng.integers(256)))
        em.frame()
        if t % 50 == 48:
            em.screen_gray_into(b)
        if t % 50 == 49:
            em.screen_gray_into(a)
            gray_max_area_resize_into(a, b, ty, tx, out)
            rgb_a, rgb_b = (np.ascontiguousarray(np.repeat(g[..., None], 3, 2)) for g in (a, b))
            kernels.gray_area_resize_into(rgb_a, rgb_b, True, 0, 0, ty, tx, ref)
            worst = max(worst, int(np.abs(out.astype(int) - ref[..., 0]).max()))
    return worst


def path_differences(game: str) -> dict[str, float]:
    """How far apart the two paths' numbers are, over frames of a random rollout.

    ``gray``: ALE's gray frame against ``kernels.rgb_to_gray_into`` of its RGB frame;
    ``obs``: the 84x84 observation of the RGB path (gray of the max of two RGB frames) against
    the gray path's (max of two gray frames, as gymnasium's AtariPreprocessing and ALE's vector
    env do), in gray levels.
    """
    em = AleEmulator(game)
    em.start()
    rng = np.random.default_rng(0)
    rgb = np.zeros((2, 210, 160, 3), np.uint8)
    gray = np.zeros((2, 210, 160), np.uint8)
    luma = np.zeros((210, 160), np.uint8)
    obs_rgb = np.zeros((SIZE, SIZE, 1), np.uint8)
    obs_gray = np.zeros((SIZE, SIZE), np.uint8)
    ty, tx = kernels.area_table(210, SIZE), kernels.area_table(160, SIZE)
    gray_diff, obs_diff = [], []
    for t in range(2000):
        em.press(int(rng.integers(256)))
        em.frame()
        if t % 20 >= 18:  # the last two frames of every fifth step
            em.screen_into(rgb[t % 2])
            em.screen_gray_into(gray[t % 2])
            kernels.rgb_to_gray_into(rgb[t % 2], luma)
            gray_diff.append(np.abs(luma.astype(int) - gray[t % 2]).max())
        if t % 20 == 19:
            kernels.gray_area_resize_into(rgb[1], rgb[0], True, 0, 0, ty, tx, obs_rgb)
            gray_max_area_resize_into(gray[1], gray[0], ty, tx, obs_gray)
            obs_diff.append(np.abs(obs_rgb[..., 0].astype(int) - obs_gray))
        if em.game_over():
            em.start()
    d = np.stack(obs_diff)
    return {
        "gray_max": int(max(gray_diff)),
        "obs_max": int(d.max()),
        "obs_mean": round(float(d.mean()), 4),
        "obs_pixels_differing": round(float((d > 0).mean()), 4),
    }


def decoder_cost(game: str, repeat: int, number: int = 20000) -> dict[str, float]:
    """Microseconds of CPU per call of the RAM decoder's layers (best of ``repeat``)."""
    em = AleEmulator(game)
    em.start()
    for _ in range(200):
        em.frame()
    decoder, ram = em.decoder, em.ram().copy()
    out = np.zeros(len(decoder.names), np.int64)
    calls = {
        "kernel": lambda: decode_ram_into(ram, decoder.plan, out),
        "values_into": lambda: decoder.values_into(ram, out),
        "dict": lambda: decoder(ram),
        "variables": em.variables,  # getRAM + dict
    }
    cost = {"variables_decoded": len(decoder.names)}
    for name, call in calls.items():
        call()
        timer = timeit.Timer(call, timer=time.thread_time)
        cost[name] = round(min(timer.repeat(number=number, repeat=repeat)) / number * 1e6, 3)
    return cost


def bare_act_fps(game: str, frames: int) -> tuple[float, float]:
    """Frames/s of one emulator's bare ``frame()`` (FIRE held), by wall and by CPU time."""
    em = AleEmulator(game)
    em.start()
    em.press(1)
    wall, cpu = time.perf_counter(), time.thread_time()
    for _ in range(frames):
        em.frame()
        if em.game_over():
            em.start()
    return frames / (time.perf_counter() - wall), frames / (time.thread_time() - cpu)


def threaded_fps(game: str, envs: int, steps: int, gray: str) -> float:
    workers = [Worker(game, 1, gray, seed=k) for k in range(envs)]
    for w in workers:
        w.run(5)
    threads = [threading.Thread(target=w.run, args=(steps,)) for w in workers]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return envs * steps * FRAMES_PER_STEP / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--game", default="Pong-Atari2600-v0", help="an ID, or short: Pong")
    parser.add_argument("--envs", type=int, default=4, help="K emulators in the process")
    parser.add_argument("--steps", type=int, default=300, help="agent steps per emulator")
    parser.add_argument("--repeat", type=int, default=3, help="best of this many runs")
    args = parser.parse_args()
    args.game = game_id(args.game)
    ale_rom(args.game)  # fail early on a game ALE does not run
    k = args.envs

    load_before = os.getloadavg()
    result: dict = {
        "bench": "ale_worker",
        "game": args.game,
        "envs": k,
        "steps": args.steps,
        "repeat": args.repeat,
        "machine": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "clock": "per-part costs and cpu_fps: this thread's CPU time; fps: wall time",
    }
    bare = [bare_act_fps(args.game, args.steps * FRAMES_PER_STEP) for _ in range(args.repeat)]
    result["bare_act"] = {
        "fps": round(max(b[0] for b in bare)),
        "cpu_fps": round(max(b[1] for b in bare)),
    }
    parts = ("act x4", "screens", "resize", "ram")
    for gray in PATHS:
        entry: dict = {}
        for envs in (1, k):
            worker = Worker(args.game, envs, gray)
            worker.run(5)  # compile and warm
            best = None
            for _ in range(args.repeat):
                clock = [0, 0, 0, 0]
                worker.run(args.steps, clock)
                us = [c / 1e3 / (args.steps * envs) for c in clock]
                best = us if best is None or sum(us) < sum(best) else best
            if envs == k:
                entry["us_per_step"] = dict(zip(parts, (round(u, 2) for u in best)))
                entry["us_per_step_total"] = round(sum(best), 2)
            runs = [worker.run(args.steps) for _ in range(args.repeat)]  # uninstrumented
            frames = envs * args.steps * FRAMES_PER_STEP
            entry[f"fps_{envs}"] = round(frames / min(r[0] for r in runs))
            entry[f"cpu_fps_{envs}"] = round(frames / min(r[1] for r in runs))
        result[gray] = entry
    result["rgb"][f"fps_{k}_threads"] = round(
        max(threaded_fps(args.game, k, args.steps, "rgb") for _ in range(args.repeat))
    )
    result["decoder_us"] = decoder_cost(args.game, args.repeat)
    result["gray_kernel_vs_rgb_kernel_max_diff"] = check_gray_kernel(args.game)
    result["rgb_vs_gray_path"] = path_differences(args.game)
    result["loadavg_before"] = [round(x, 2) for x in load_before]
    result["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]

    print(f"{args.game}, {result['machine']}, {result['cpus']} CPUs, load {load_before[0]:.2f}")
    print(f"bare act, 1 emulator: {result['bare_act']} frames/s (wall, CPU)")
    print(f"per step, us of CPU ({k} emulators in turn):")
    print(f"| path | {' | '.join(parts)} | total |")
    print("|---|---|---|---|---|---|")
    for gray in PATHS:
        r = result[gray]
        cells = " | ".join(str(r["us_per_step"][p]) for p in parts)
        print(f"| {gray} | {cells} | {r['us_per_step_total']} |")
    print("frames/s (wall; CPU):")
    for gray in PATHS:
        r = result[gray]
        print(
            f"  {gray}: 1 emulator {r['fps_1']}; {r['cpu_fps_1']}, "
            f"{k} emulators {r[f'fps_{k}']}; {r[f'cpu_fps_{k}']}"
        )
    print(f"  rgb, {k} emulators in {k} threads (wall): {result['rgb'][f'fps_{k}_threads']}")
    print(f"rgb path against gray path: {result['rgb_vs_gray_path']}")
    print(f"RAM decoder, us of CPU per call: {result['decoder_us']}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
