"""Rainbow's replay memory: prioritized, n-step, each 84x84 frame stored once, numba kernels.

The pool hands the agent stacks of the last 4 frames (channels first). Storing them as they come
would keep every frame four times (plus once more as the next observation); here each env has a
ring of slots holding only the newest frame of each step, and :func:`stack_frames_into` rebuilds
a stack on sampling by walking back through the ring, repeating the episode's first frame where
the episode is younger than the stack (what the pool itself does after a reset). A 1M-step
memory is then 7 GB of frames instead of 28 (or 56 with next observations).

Layout. Env ``e`` owns the slots ``e * ring ... e * ring + ring - 1`` (``ring = capacity //
num_envs``), written in order and wrapping around, so an env's steps are contiguous whatever the
other envs do (lock-step or async). A slot holds one frame, the action taken from it, the reward
that followed, and flags: ``FIRST`` (the frame begins an episode) and ``LAST`` (the frame ends
one: the final observation of a finished episode, which has no action and is never sampled as a
transition; with ``TERMINAL`` when the game ended it, without when a time limit did, so that a
truncated episode still bootstraps from its last state).

Priorities live in a sum tree over all slots (leaf = slot). A slot's leaf is 0 until its n-step
transition is complete (``n`` more steps written, or the episode over), then it gets the
largest priority seen so far (Schaul et al. 2016). The oldest ``stack - 1`` slots of each ring
are kept at 0: their stacks would reach back into slots that now hold the newest frames.

Every kernel has a plain-numpy twin in ``tests/naive.py``; the tests compare them.
"""

from __future__ import annotations

import numba
import numpy as np

from fastretro.errors import InvalidArgumentError
from fastretro.runtime.jit import JIT

#: Slot flags (bits of ``PrioritizedReplay.flags``).
FIRST, LAST, TERMINAL = 1, 2, 4

_JIT = JIT


# -- the sum tree ----------------------------------------------------------------------------


@numba.njit(**_JIT)
def sumtree_update(tree, leaves, values):
    """Set ``tree``'s leaves ``leaves[j]`` to ``values[j]`` and recompute their ancestors.

    ``tree`` is float64 of length ``2 * size`` (``size`` a power of two): node ``i``'s children
    are ``2i`` and ``2i + 1``, the root is node 1, leaf ``k`` is node ``size + k``. Ancestors are
    recomputed as the sum of their children rather than moved by the change, so rounding errors
    do not pile up over millions of updates.
    """
    size = tree.shape[0] // 2
    for j in range(leaves.shape[0]):
        i = leaves[j] + size
        tree[i] = values[j]
        i //= 2
        while i >= 1:
            tree[i] = tree[2 * i] + tree[2 * i + 1]
            i //= 2


@numba.njit(**_JIT)
def sumtree_sample_into(tree, targets, out_leaves, out_priorities):
    """The leaf holding each prefix sum ``targets[j]`` into ``out_leaves[j]``, its value too.

    Leaf ``k`` is chosen when ``sum(leaves[:k]) <= target < sum(leaves[:k + 1])``: sampling with
    uniform targets in ``[0, total)`` draws leaf ``k`` with probability ``leaves[k] / total``. A
    leaf of 0 is never chosen (a target that rounding carries past the last non-zero leaf lands
    on it, not on an empty one).
    """
    size = tree.shape[0] // 2
    for j in range(targets.shape[0]):
        v = targets[j]
        i = 1
        while i < size:
            left = tree[2 * i]
            if v < left or tree[2 * i + 1] <= 0.0:
                i = 2 * i
            else:
                v -= left
                i = 2 * i + 1
        out_leaves[j] = i - size
        out_priorities[j] = tree[i]


# -- writing steps ---------------------------------------------------------------------------


@numba.njit(**_JIT)
def _write_slot(e, frame, flag, ring, stack, frames, flags, tree, cursor):
    """Advance env ``e``'s cursor, write a frame there; returns the slot (global index)."""
    base = e * ring
    cursor[e] = (cursor[e] + 1) % ring
    slot = base + cursor[e]
    frames[slot] = frame
    flags[slot] = flag
    # The overwritten slot's old transition is gone, and so are the stacks of the next
    # stack - 1 slots (the oldest left): they would reach back into this new frame.
    size = tree.shape[0] // 2
    for k in range(stack):
        leaf = base + (cursor[e] + k) % ring
        i = leaf + size
        if tree[i] != 0.0:
            tree[i] = 0.0
            i //= 2
            while i >= 1:
                tree[i] = tree[2 * i] + tree[2 * i + 1]
                i //= 2
    return slot


@numba.njit(**_JIT)
def _set_leaf(tree, leaf, value):
    size = tree.shape[0] // 2
    i = leaf + size
    tree[i] = value
    i //= 2
    while i >= 1:
        tree[i] = tree[2 * i] + tree[2 * i + 1]
        i //= 2


@numba.njit(**_JIT)
def begin_episodes(env_ids, first_frames, ring, stack, frames, flags, tree, cursor, ep_steps):
    """Env ``env_ids[j]`` starts an episode with ``first_frames[j]`` (a ``FIRST`` slot).

    For the observations of a reset (``reset``/``async_reset``); an episode the pool starts by
    itself at the end of another goes through :func:`append_steps`. A previous episode left
    unfinished keeps its complete transitions; its last ``n - 1`` are never completed.
    """
    for j in range(env_ids.shape[0]):
        e = env_ids[j]
        _write_slot(e, first_frames[j], FIRST, ring, stack, frames, flags, tree, cursor)
        ep_steps[e] = 0


@numba.njit(**_JIT)
def append_steps(
    env_ids,
    actions,
    rewards,
    terminated,
    truncated,
    final_frames,
    next_frames,
    n,
    priority,
    ring,
    stack,
    frames,
    action_store,
    reward_store,
    flags,
    tree,
    cursor,
    ep_steps,
):
    """One step of each env in ``env_ids``: the action taken, its reward, what came next.

    ``next_frames[j]`` is the newest frame of the env's next observation; where the step ended
    the episode (``terminated[j]`` or ``truncated[j]``), ``final_frames[j]`` is the newest frame
    of the episode's last observation and ``next_frames[j]`` the first of the next episode
    (gymnasium's same-step autoreset). The transition that this step completes (the one ``n``
    steps back, or the last ``n`` of a finished episode) gets leaf value ``priority``.
    """
    for j in range(env_ids.shape[0]):
        e = env_ids[j]
        base = e * ring
        s = base + cursor[e]
        action_store[s] = actions[j]
        reward_store[s] = rewards[j]
        ep_steps[e] += 1
        if terminated[j] or truncated[j]:
            flag = LAST | TERMINAL if terminated[j] else LAST
            last = _write_slot(e, final_frames[j], flag, ring, stack, frames, flags, tree, cursor)
            for k in range(1, min(n, ep_steps[e]) + 1):
                _set_leaf(tree, base + (last - base - k + ring) % ring, priority)
            _write_slot(e, next_frames[j], FIRST, ring, stack, frames, flags, tree, cursor)
            ep_steps[e] = 0
        else:
            new = _write_slot(e, next_frames[j], 0, ring, stack, frames, flags, tree, cursor)
            if ep_steps[e] >= n:
                _set_leaf(tree, base + (new - base - n + ring) % ring, priority)


# -- reading transitions ---------------------------------------------------------------------


@numba.njit(**_JIT)
def nstep_returns_into(rewards, flags, slots, ring, n, gamma, out_returns, out_next, out_discounts):
    """The n-step return of the transition at each slot, where it leads, and its discount.

    ``out_returns[j] = sum_{k<m} gamma^k r[slot + k]`` over ``m = n`` steps, or fewer where the
    episode ends first; ``out_next[j]`` is the slot of the observation after those ``m`` steps
    (the episode's ``LAST`` slot where it ended) and ``out_discounts[j]`` is ``gamma^m``, or 0
    where the game ended the episode (``TERMINAL``: nothing to bootstrap from).
    """
    for j in range(slots.shape[0]):
        s = slots[j]
        base = s - s % ring
        ret = 0.0
        g = 1.0
        for _ in range(n):
            ret += g * rewards[s]
            g *= gamma
            s = base + (s - base + 1) % ring
            if flags[s] & LAST:
                if flags[s] & TERMINAL:
                    g = 0.0
                break
        out_returns[j] = ret
        out_next[j] = s
        out_discounts[j] = g


@numba.njit(**_JIT)
def stack_frames_into(frames, flags, slots, ring, out):
    """The frame stack (oldest first, newest last) ending at each slot into ``out[j]``.

    ``out`` is (len(slots), stack, H, W). Walking back from a slot stops at its episode's
    ``FIRST`` slot, whose frame fills the rest of the stack, as the pool's stack does after a
    reset.
    """
    stack = out.shape[1]
    for j in range(slots.shape[0]):
        s = slots[j]
        base = s - s % ring
        for k in range(stack - 1, -1, -1):
            out[j, k] = frames[s]
            if not flags[s] & FIRST:
                s = base + (s - base - 1 + ring) % ring


# -- the memory ------------------------------------------------------------------------------


class PrioritizedReplay:
    """Prioritized n-step replay over frame rings; see the module docstring for the layout.

    Args:
        capacity: slots in all (frames kept), split evenly between the envs.
        num_envs: envs writing into it (each owns a ring).
        frame_shape: (H, W) of one frame.
        stack: frames per observation (the pool's ``frame_stack``).
        n_step: steps per return.
        gamma: discount.
        alpha: priority exponent: a transition is drawn with probability ``p^alpha / sum``.
        priority_eps: added to the loss before the exponent, so no transition falls to 0.
    """

    def __init__(
        self,
        capacity: int,
        num_envs: int,
        frame_shape: tuple[int, int],
        stack: int,
        n_step: int,
        gamma: float,
        alpha: float,
        priority_eps: float,
    ) -> None:
        ring = capacity // num_envs
        # A ring must hold a full transition (the stack behind it, n steps ahead and a final
        # frame) beside the stack - 1 slots kept out of sampling.
        if ring < 2 * (stack + n_step + 1):
            raise InvalidArgumentError(
                f"Expected a replay capacity of at least {2 * (stack + n_step + 1)} slots per "
                f"env, got {capacity} for {num_envs} envs"
            )
        self.ring, self.num_envs, self.stack = ring, num_envs, stack
        self.n_step, self.gamma = n_step, gamma
        self.alpha, self.priority_eps = alpha, priority_eps
        slots = ring * num_envs
        # np.zeros maps pages lazily: memory is used as the rings fill.
        self.frames = np.zeros((slots, *frame_shape), np.uint8)
        self.actions = np.zeros(slots, np.int64)
        self.rewards = np.zeros(slots, np.float32)
        self.flags = np.zeros(slots, np.uint8)
        size = 1 << max(0, (slots - 1).bit_length())
        self.tree = np.zeros(2 * size, np.float64)
        self.cursor = np.full(num_envs, ring - 1, np.int64)  # the next write goes to slot 0
        self.ep_steps = np.zeros(num_envs, np.int64)
        self.max_priority = 1.0
        self.steps = 0  # transitions appended, all envs
        self._batch: dict[int, dict[str, np.ndarray]] = {}

    def __len__(self) -> int:
        """Transitions appended so far, all envs (not capped at the capacity)."""
        return self.steps

    @property
    def total_priority(self) -> float:
        """Sum of the sampleable transitions' priorities (0: nothing to sample)."""
        return float(self.tree[1])

    def begin(self, env_ids: np.ndarray, stacks: np.ndarray) -> None:
        """Envs ``env_ids`` were reset to ``stacks`` (their observations: n, stack, H, W)."""
        begin_episodes(
            np.asarray(env_ids, np.int64),
            np.ascontiguousarray(stacks[:, -1]),
            self.ring,
            self.stack,
            self.frames,
            self.flags,
            self.tree,
            self.cursor,
            self.ep_steps,
        )

    def append(
        self,
        env_ids: np.ndarray,
        actions: np.ndarray,
        rewards: np.ndarray,
        terminated: np.ndarray,
        truncated: np.ndarray,
        next_stacks: np.ndarray,
        final_stacks: np.ndarray | None = None,
    ) -> None:
        """One step of envs ``env_ids`` (see :func:`append_steps`).

        ``final_stacks[j]`` (the episode's last observation) is read only where the step ended
        the episode; ``None`` when none did.
        """
        ids = np.asarray(env_ids, np.int64)
        nxt = np.ascontiguousarray(next_stacks[:, -1])
        final = nxt if final_stacks is None else np.ascontiguousarray(final_stacks[:, -1])
        append_steps(
            ids,
            np.asarray(actions, np.int64),
            np.asarray(rewards, np.float32),
            np.asarray(terminated, np.bool_),
            np.asarray(truncated, np.bool_),
            final,
            nxt,
            self.n_step,
            self.max_priority,
            self.ring,
            self.stack,
            self.frames,
            self.actions,
            self.rewards,
            self.flags,
            self.tree,
            self.cursor,
            self.ep_steps,
        )
        self.steps += len(ids)

    def sample(self, batch: int, beta: float, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """``batch`` transitions drawn by priority (stratified: one per equal slice of the sum).

        Returns arrays that are reused by the next call of the same batch size: ``slots``,
        ``obs`` and ``next_obs`` (batch, stack, H, W) uint8, ``actions``, ``returns``,
        ``discounts`` (0 at a game's end) and ``weights``, the importance-sampling weights
        ``(N P(i))^-beta`` divided by the batch's largest (as anyrl and Dopamine do), in float32.
        """
        total = self.tree[1]
        if not total > 0.0:
            raise InvalidArgumentError("Cannot sample: no complete transition in the replay memory")
        b = self._batch.get(batch)
        if b is None:
            h, w = self.frames.shape[1:]
            b = self._batch[batch] = dict(
                slots=np.zeros(batch, np.int64),
                priorities=np.zeros(batch, np.float64),
                next_slots=np.zeros(batch, np.int64),
                returns=np.zeros(batch, np.float32),
                discounts=np.zeros(batch, np.float32),
                obs=np.zeros((batch, self.stack, h, w), np.uint8),
                next_obs=np.zeros((batch, self.stack, h, w), np.uint8),
                actions=np.zeros(batch, np.int64),
                weights=np.zeros(batch, np.float32),
            )
        targets = (np.arange(batch) + rng.random(batch)) * (total / batch)
        sumtree_sample_into(self.tree, targets, b["slots"], b["priorities"])
        nstep_returns_into(
            self.rewards,
            self.flags,
            b["slots"],
            self.ring,
            self.n_step,
            self.gamma,
            b["returns"],
            b["next_slots"],
            b["discounts"],
        )
        stack_frames_into(self.frames, self.flags, b["slots"], self.ring, b["obs"])
        stack_frames_into(self.frames, self.flags, b["next_slots"], self.ring, b["next_obs"])
        np.take(self.actions, b["slots"], out=b["actions"])
        p = b["priorities"]
        b["weights"][:] = (p / p.min()) ** -beta
        return b

    def update_priorities(self, slots: np.ndarray, losses: np.ndarray) -> None:
        """New priorities ``(loss + priority_eps) ** alpha`` for sampled ``slots``."""
        p = (np.asarray(losses, np.float64) + self.priority_eps) ** self.alpha
        self.max_priority = max(self.max_priority, float(p.max()))
        sumtree_update(self.tree, np.asarray(slots, np.int64), p)
