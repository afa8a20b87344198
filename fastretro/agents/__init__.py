"""Agents that drive the pool: JERK (scripted search, agents/jerk.py)."""
