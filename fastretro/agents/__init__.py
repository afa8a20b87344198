"""The contest's agents on the pool: JERK, PPO2, Rainbow and World Models.

What every agent needs is written once: ``harness.py`` (config + CLI, checkpoint checks, the
play loop, the eval factory), ``registry.py`` (the agents the CLI, ``fastretro eval`` and the
profiler know), ``common.py`` (the image pool, the CNNs, run logs), ``checkpoints.py``.
"""
