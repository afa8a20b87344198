"""How fast World Models' ``evolve`` could run the pool here: with the real V, and with V free.

``evolve`` (fastretro/agents/world_models/evolution.py) runs V (the VAE's encoder), M (the LSTM)
and the candidates' controllers in the parent, batched over each ``recv``, while the workers
step. On a machine without a GPU all of it shares the CPU with the emulators. This script
measures:

- the cost of each part per batch on one core (``time.perf_counter`` over repeated calls);
- ``evolve`` for ``--seconds`` as shipped, then with ``ConvVAE.encode`` replaced by one that
  returns zeros (V free; M, the controllers, the evaluator's loop and the pool unchanged),
  each with the pool's frames/s (filler steps included, as in ``evolve.json``), the workers'
  CPU use, the parent's CPU use and the share of the machine left idle (/proc/stat);
- ``fastretro bench --configs world-models`` for the same pool before and after, for the ratio
  the issue asks for (the pool's frames/s during evolve over the bench's).

Needs a run folder with ``vae.pt`` and ``mdn.pt`` (``fastretro world-models collect``, ``vae``
and ``mdn``; a brief training is enough: speed does not depend on the weights). Each evolve
runs in a copy of that folder without a controller.

Run: ``python bench/bench_evolve_ceiling.py --run-dir RUN [--seconds 30] | tee
bench/results/DATE-evolve-ceiling.txt``
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

# One evolve per fresh process: the stub must not leak into the other run, and each parent's
# torch starts no threads before its pool forks.
EVOLVE = r"""
import json, os, sys, torch
from fastretro.agents import world_models as wm

run_dir, seconds, free = sys.argv[1], float(sys.argv[2]), sys.argv[3] == "free"
if free:
    def encode(self, x):
        z = torch.zeros(x.shape[0], self.z_size)
        return z, z
    wm.ConvVAE.encode = encode

def idle():
    values = [int(v) for v in open("/proc/stat").readline().split()[1:]]
    return values[3] + values[4], sum(values)

cfg = wm.resolve_config(run_dir, evolve_seconds=seconds)
i0, t0 = idle()
c0 = os.times()
s = wm.evolve(cfg, run_dir, progress=False)
i1, t1 = idle()
c1 = os.times()
parent = (c1.user + c1.system - c0.user - c0.system) / s["seconds"]
print(json.dumps({
    "v": "free" if free else "paper",
    "pool_frames_per_s": s["pool_frames_per_s"],
    "workers_cpu_use": s["workers_cpu_use"],
    "parent_cores": round(parent, 2),
    "idle": round((i1 - i0) / (t1 - t0), 2),
    "filler_steps": s["filler_steps"],
    "pool": s["pool"],
}))
"""


def part_costs(run_dir: str, batch: int, repeat: int = 300) -> dict:
    """Microseconds per batch of ``batch`` frames for V, C, M and the whole act, on one core."""
    import torch

    from fastretro.agents import world_models as wm

    torch.set_num_threads(1)
    cfg = wm.resolve_config(run_dir)
    vae, mdn = wm.load_world_model(run_dir, cfg, len(cfg.resolved_actions()))
    n_actions = len(cfg.resolved_actions())
    policies = wm.Policies(vae, mdn, batch)
    obs = np.random.default_rng(0).integers(0, 256, (batch, 64, 64, 3), np.uint8)
    rows = np.arange(batch)
    weights = torch.randn(batch, wm.controller_size(vae.z_size, mdn.hidden, n_actions))

    def timed(call) -> float:
        for _ in range(20):
            call()
        start = time.perf_counter()
        for _ in range(repeat):
            call()
        return round((time.perf_counter() - start) / repeat * 1e6, 1)

    with torch.inference_mode():
        x = wm.ConvVAE.to_input(torch.from_numpy(obs))
        z, _ = vae.encode(x)
        h = c = torch.zeros(batch, mdn.hidden)
        a = wm.controller_actions(z, h, weights)
        costs = {
            "batch": batch,
            "V encode": timed(lambda: vae.encode(x)),
            "C controllers": timed(lambda: wm.controller_actions(z, h, weights)),
            "M lstm step": timed(lambda: mdn.step(z, a, (h, c))),
        }
    costs["act (all of it)"] = timed(lambda: policies.act(obs, rows, weights))
    return costs


def bench_pool(num_envs: int, seconds: float) -> float:
    out = tempfile.mkdtemp()
    cmd = [sys.executable, "-m", "fastretro", "bench", "--configs", "world-models"]
    cmd += ["--backends", "fastretro", "--num-envs", str(num_envs), "--seconds", str(seconds)]
    cmd += ["--no-plot", "--no-progress", "--out", out]
    subprocess.run(cmd, check=True, capture_output=True)
    with open(os.path.join(out, "bench.json")) as f:
        (row,) = [r for r in json.load(f)["results"] if r["backend"] == "fastretro"]
    shutil.rmtree(out)
    return row["frames_per_s"]


def evolve_run(run_dir: str, seconds: float, v: str) -> dict:
    work = tempfile.mkdtemp()
    for name in ("vae.pt", "mdn.pt", "config.json"):
        shutil.copy(os.path.join(run_dir, name), work)
    done = subprocess.run(
        [sys.executable, "-c", EVOLVE, work, str(seconds), v],
        check=True,
        capture_output=True,
        text=True,
    )
    shutil.rmtree(work)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", required=True, help="a folder with vae.pt and mdn.pt")
    parser.add_argument("--seconds", type=float, default=30.0, help="seconds of each evolve")
    args = parser.parse_args()
    from fastretro.agents import world_models as wm
    from fastretro.tools.bench import machine_info

    cfg = wm.resolve_config(args.run_dir)
    print(json.dumps({"machine": machine_info(), "run_dir": args.run_dir}))
    print(json.dumps(part_costs(args.run_dir, cfg.batch_size)))
    before = bench_pool(cfg.num_envs, 10)
    runs = [evolve_run(args.run_dir, args.seconds, v) for v in ("paper", "free")]
    after = bench_pool(cfg.num_envs, 10)
    bench = (before + after) / 2
    print(json.dumps({"bench_before": round(before), "bench_after": round(after)}))
    for r in runs:
        print(json.dumps({**r, "ratio_to_bench": round(r["pool_frames_per_s"] / bench, 2)}))


if __name__ == "__main__":
    main()
