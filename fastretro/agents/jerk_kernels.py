"""JERK's actions and bookkeeping for a whole pool at once (see fastretro/agents/jerk.py).

Each env runs one explorer, in one of three modes: moving forward (``MODE_FORWARD``, for up to
``forward_steps``), backing off (``MODE_BACK``, after a forward move that earned nothing), or
replaying a remembered action sequence (``MODE_REPLAY``). Actions are indices into the JERK
action set: no-op, forward, forward+jump, back, back+jump.
"""

from __future__ import annotations

import numba
import numpy as np

from fastretro.runtime.jit import JIT

MODE_FORWARD, MODE_BACK, MODE_REPLAY = 0, 1, 2
NOOP, FORWARD, FORWARD_JUMP, BACK, BACK_JUMP = 0, 1, 2, 3, 4

_JIT = JIT


@numba.njit(**_JIT)
def jerk_plan_into(
    envs,
    lengths,
    mode,
    jump_left,
    replay,
    replay_len,
    replay_pos,
    draws,
    jump_prob,
    jump_repeat,
    out,
    used,
):
    """The next ``lengths[j]`` actions of each env in ``envs`` into ``out[j, :lengths[j]]``.

    Moving: the jump button is held for ``jump_repeat`` steps, starting with probability
    ``jump_prob`` on a step where it is not held. Such a step, and only such a step, takes the
    env's next uniform draw (``draws[j, c]``, ``c`` counting from 0 in the stretch), as the
    original's ``move`` calls ``random.random()``; ``used[j, s]``: the draws taken by the
    stretch's first ``s + 1`` steps. Replaying: the sequence's next action, then no-op once it
    is exhausted (no draw). Advances each env's jump and replay position. ``envs`` lists the
    envs to act for (all of them in lock-step, a finished batch in async mode); the per-env
    state arrays are indexed by env. One step at a time (``lengths`` all 1) or a stretch in
    which JERK takes no decision (the rest of a move, or of a replay: the caller keeps
    ``lengths`` within it).
    """
    for j in range(envs.shape[0]):
        i = envs[j]
        c = 0
        for s in range(lengths[j]):
            if mode[i] == MODE_REPLAY:
                p = replay_pos[i]
                out[j, s] = replay[i, p] if p < replay_len[i] else NOOP
                replay_pos[i] = p + 1
                used[j, s] = c
                continue
            jump = False
            if jump_left[i] > 0:
                jump = True
                jump_left[i] -= 1
            else:
                c += 1
                if draws[j, c - 1] < jump_prob:
                    jump = True
                    jump_left[i] = jump_repeat - 1
            used[j, s] = c
            if mode[i] == MODE_FORWARD:
                out[j, s] = FORWARD_JUMP if jump else FORWARD
            else:
                out[j, s] = BACK_JUMP if jump else BACK


@numba.njit(**_JIT)
def jerk_record_sequences(
    envs,
    actions,
    rewards,
    steps,
    done,
    t,
    history,
    cumulative,
    best,
    best_t,
    mode,
    steps_left,
    move_reward,
    jump_left,
    forward_steps,
    back_steps,
):
    """Account for the ``steps[j]`` steps each env in ``envs`` ran (one, stepping per step).

    ``actions[j, s]`` and ``rewards[j, s]`` are step ``s``'s; ``done[j]``: the last step ended
    the episode. Each step appends its action to the env's history, updates its cumulative
    reward, the best one and the FIRST step reaching it (the end of the best prefix), and, for
    envs not at an episode end, switches a finished forward move that earned nothing (<= 0)
    to a back-off, and any other finished move to a new forward move.
    """
    for j in range(envs.shape[0]):
        i = envs[j]
        n = steps[j]
        for s in range(n):
            k = t[i]
            if k < history.shape[1]:
                history[i, k] = actions[j, s]
            cumulative[i] += rewards[j, s]
            if cumulative[i] > best[i]:
                best[i] = cumulative[i]
                best_t[i] = k + 1  # prefix length
            t[i] = k + 1
            if mode[i] == MODE_REPLAY or (done[j] and s == n - 1):
                continue
            move_reward[i] += rewards[j, s]
            steps_left[i] -= 1
            if steps_left[i] <= 0:
                if mode[i] == MODE_FORWARD and move_reward[i] <= 0:
                    mode[i] = MODE_BACK
                    steps_left[i] = back_steps
                else:
                    mode[i] = MODE_FORWARD
                    steps_left[i] = forward_steps
                move_reward[i] = 0.0
                jump_left[i] = 0  # every move starts with the jump button released


@numba.njit(**_JIT)
def sort_by_mean_into(order, score_sums, score_counts):
    """Re-sort ``order`` (solution indices) by mean score, ascending and stable, in place.

    The original sorts its list of solutions this way before every replay and replays the last
    one, so on a tie it takes the tied solution that comes last in the list's current order
    (which earlier sorts have shaped): keeping ``order`` between calls reproduces that.
    """
    n = order.shape[0]
    means = np.empty(n)
    for j in range(n):
        means[j] = score_sums[order[j]] / score_counts[order[j]]
    resorted = order[np.argsort(means, kind="mergesort")]
    order[:] = resorted
