"""The contest's agents on the pool, one file each: JERK, PPO2, Rainbow and World Models.

What they share (the image pool, the Nature CNN, checkpoints, run logs) is in ``common.py``.
"""
