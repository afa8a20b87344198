"""CleanRL's PPO scripts (examples/clients) train on fastretro, and on EnvPool, unchanged."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CLIENTS = os.path.join(ROOT, "examples", "clients")
TINY = ["--total-timesteps", "2048", "--num-envs", "4", "--num-steps", "128", "--no-cuda"]
FASTRETRO_IMPORT = "import fastretro.envpool as envpool\n"


def _needs(*modules: str) -> None:
    for name in modules:
        extra = "peers" if name == "envpool" else "test"
        pytest.importorskip(
            name, reason=f'CleanRL\'s scripts need {name}: pip install -e ".[{extra}]"'
        )


def run_client(path: str, cwd, *args: str) -> str:
    """Run a client script as CleanRL's users do; return its stdout (it must exit with 0)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run(
        [sys.executable, path, *TINY, *args],
        capture_output=True,
        text=True,
        timeout=280,
        cwd=cwd,  # the scripts write TensorBoard logs to runs/ under it
        env=env,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert re.search(r"^SPS: \d+$", out.stdout, re.M), out.stdout[-2000:]
    assert os.listdir(os.path.join(cwd, "runs"))
    return out.stdout


def episodic_returns(stdout: str) -> list[float]:
    return [float(r) for r in re.findall(r"episodic_return=(-?[\d.]+)", stdout)]


def test_ppo_atari_envpool_trains_on_fastretro(tmp_path):
    _needs("torch", "tyro", "tensorboard", "ale_py")
    stdout = run_client(os.path.join(CLIENTS, "ppo_atari_envpool.py"), tmp_path)
    # Whole games (info["lives"] == 0), scored with the raw reward: Breakout scores >= 0.
    returns = episodic_returns(stdout)
    assert returns and all(r >= 0 for r in returns)


def test_ppo_atari_envpool_with_its_own_import_trains_on_envpool(tmp_path):
    _needs("torch", "tyro", "tensorboard", "envpool")
    with open(os.path.join(CLIENTS, "ppo_atari_envpool.py")) as f:
        source = f.read()
    # The script is the port with one line changed; putting it back gives EnvPool's client.
    assert source.count(FASTRETRO_IMPORT) == 1
    script = tmp_path / "ppo_atari_envpool.py"
    script.write_text(source.replace(FASTRETRO_IMPORT, "import envpool\n"))
    assert episodic_returns(run_client(str(script), tmp_path))


def test_ppo_atari_trains_on_fastretros_gymnasium_id(tmp_path):
    _needs("torch", "tyro", "tensorboard", "ale_py", "stable_baselines3")
    # Long enough for whole games (five lives each) to end: CleanRL's loop logs their raw
    # scores from final_info["episode"], which the id's protocol has the pool write.
    stdout = run_client(
        os.path.join(CLIENTS, "ppo_atari.py"), tmp_path, "--total-timesteps", "8192"
    )
    assert episodic_returns(stdout)
