"""Plain-numpy references for every kernel in fastretro.runtime.kernels: slow, obvious, independent.

Each one follows the textbook definition rather than the kernel's algorithm (float luma, dense
overlap matrices for the area average, a deque for the frame stack), so that agreeing with them
means something.
"""

from __future__ import annotations

from collections import deque

import numpy as np


def rgb_to_gray(src: np.ndarray) -> np.ndarray:
    """ITU-R 601 luma, ``0.299 R + 0.587 G + 0.114 B``, rounded: (H, W, 3) -> (H, W) uint8."""
    luma = src[..., 0] * 0.299 + src[..., 1] * 0.587 + src[..., 2] * 0.114
    return np.floor(luma + 0.5).astype(np.uint8)


def overlap_matrix(src_len: int, dst_len: int) -> np.ndarray:
    """(dst_len, src_len): the fraction of each destination cell covered by each source pixel."""
    scale = src_len / dst_len
    m = np.zeros((dst_len, src_len))
    for d in range(dst_len):
        lo, hi = d * scale, (d + 1) * scale
        for s in range(int(np.floor(lo)), min(src_len, int(np.ceil(hi)))):
            m[d, s] = max(0.0, min(hi, s + 1) - max(lo, s)) / scale
    return m


def area_resize(src: np.ndarray, height: int, width: int) -> np.ndarray:
    """Area-average resize of (H, W) or (H, W, C) uint8, computed with dense matrices."""
    my, mx = overlap_matrix(src.shape[0], height), overlap_matrix(src.shape[1], width)
    img = src.astype(np.float64)
    if img.ndim == 2:
        out = my @ img @ mx.T
    else:
        out = np.stack([my @ img[..., c] @ mx.T for c in range(img.shape[2])], axis=-1)
    return np.floor(out + 0.5).clip(0, 255).astype(np.uint8)


def crop(src: np.ndarray, top: int, bottom: int, left: int, right: int) -> np.ndarray:
    """``src`` without ``top``/``bottom`` rows and ``left``/``right`` columns at its edges."""
    return src[top : src.shape[0] - bottom, left : src.shape[1] - right]


def max_pool(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Element-wise maximum of two frames."""
    return np.maximum(a, b)


def preprocess(
    frame: np.ndarray,
    prev: np.ndarray | None = None,
    *,
    grayscale: bool = False,
    resize: tuple[int, int] | None = None,
    crop_margins: tuple[int, int, int, int] = (0, 0, 0, 0),
) -> np.ndarray:
    """The whole per-frame pipeline, step by step: max-pool, crop, gray, resize -> (h, w, C)."""
    if prev is not None:
        frame = max_pool(frame, prev)
    frame = crop(frame, *crop_margins)
    if grayscale:
        frame = rgb_to_gray(frame)[..., None]
    if resize is not None:
        out = area_resize(frame, *resize)
        frame = out if out.ndim == 3 else out[..., None]
    return frame


class FrameStack:
    """The last ``k`` frames concatenated on the channel axis, newest last; reset repeats one."""

    def __init__(self, k: int) -> None:
        self.frames: deque[np.ndarray] = deque(maxlen=k)

    def reset(self, frame: np.ndarray) -> np.ndarray:
        """Fill the stack with ``frame`` and return it."""
        for _ in range(self.frames.maxlen):
            self.frames.append(frame)
        return self.observation()

    def push(self, frame: np.ndarray) -> np.ndarray:
        """Add the newest frame and return the stack."""
        self.frames.append(frame)
        return self.observation()

    def observation(self) -> np.ndarray:
        """(H, W, k * C)."""
        return np.concatenate(list(self.frames), axis=-1)


# -- JERK's bookkeeping, one env at a time, as retro-baselines' jerk_agent.py reads ------------


def jerk_action(mode, jump_left, replay_seq, replay_pos, draw, jump_prob, jump_repeat):
    """(action, new jump_left, new replay_pos) of one explorer: the original's move()/exploit()."""
    if mode == 2:
        action = replay_seq[replay_pos] if replay_pos < len(replay_seq) else 0
        return action, jump_left, replay_pos + 1
    jump = False
    if jump_left > 0:
        jump, jump_left = True, jump_left - 1
    elif draw < jump_prob:
        jump, jump_left = True, jump_repeat - 1
    base = 1 if mode == 0 else 3
    return base + int(jump), jump_left, replay_pos


def best_prefix(rewards):
    """The original's TrackedEnv.best_sequence length: first index of the max cumulative + 1."""
    cumulative = np.cumsum(rewards)
    return int(np.flatnonzero(cumulative == cumulative.max())[0]) + 1


def sort_by_mean(order, scores):
    """The original's ``solutions = sorted(solutions, key=lambda x: np.mean(x[0]))``."""
    return sorted(order, key=lambda j: np.mean(scores[j]))


def gae(rewards, values, dones, last_value, last_done, gamma, lam):
    """GAE in plain Python, one env at a time, from the definition.

    A_t = sum_k (gamma lam)^k delta_{t+k}, delta_t = r_t + gamma V(s_{t+1}) (1 - d_{t+1}) -
    V(s_t), where d_{t+1} marks that s_{t+1} began a new episode; the sum stops at that boundary.
    Lists of lists [step][env] in, (advantages, returns) out.
    """
    steps, envs = len(rewards), len(rewards[0])
    adv = [[0.0] * envs for _ in range(steps)]
    for e in range(envs):
        for t in range(steps):
            total, discount = 0.0, 1.0
            for k in range(t, steps):
                next_value = last_value[e] if k == steps - 1 else values[k + 1][e]
                next_done = last_done[e] if k == steps - 1 else dones[k + 1][e]
                delta = rewards[k][e] + gamma * next_value * (1 - next_done) - values[k][e]
                total += discount * delta
                if next_done:
                    break
                discount *= gamma * lam
            adv[t][e] = total
    returns = [[adv[t][e] + values[t][e] for e in range(envs)] for t in range(steps)]
    return adv, returns


# stable-retro's scenario semantics (src/data.cpp, src/utils.cpp), read straight from the JSON.
_OPS = {
    "equal": lambda v, r: int(v == r),
    "negative-equal": lambda v, r: int(v == -r),
    "not-equal": lambda v, r: int(v != r),
    "less-than": lambda v, r: int(v < r),
    "greater-than": lambda v, r: int(v > r),
    "less-or-equal": lambda v, r: int(v <= r),
    "greater-or-equal": lambda v, r: int(v >= r),
    "nonzero": lambda v, r: int(v != 0),
    "zero": lambda v, r: int(v == 0),
    "positive": lambda v, r: int(v > 0),
    "negative": lambda v, r: int(v < 0),
    "sign": lambda v, r: (v > 0) - (v < 0),
}


class ScenarioReference:
    """A scenario.json evaluated after each RAM read, as stable-retro's ``Scenario::update``."""

    def __init__(self, scenario: dict, start: dict) -> None:
        self.scenario = scenario
        self.prev = dict(start)

    def _measure(self, name, spec, now, default_measurement):
        value = now[name]
        if spec.get("measurement", default_measurement) == "delta":
            value = now[name] - self.prev[name]
        op = _OPS.get(spec.get("op"), lambda v, r: v)
        return op(value, spec.get("reference", 0))

    def _done(self, node, now):
        results = [
            self._measure(name, spec, now, "absolute") > 0
            for name, spec in node.get("variables", {}).items()
        ] + [self._done(child, now) for child in node.get("nodes", {}).values()]
        return all(results) if node.get("condition") == "all" else any(results)

    def update(self, now: dict) -> tuple[float, bool]:
        reward_spec = self.scenario.get("reward", {})
        terms = [(1, 1, reward_spec["time"])] if "time" in reward_spec else []
        terms += [(now, name, spec) for name, spec in reward_spec.get("variables", {}).items()]
        total = np.float32(0.0)
        for values, name, spec in terms:
            if values == 1:  # the time term measures the constant 1
                op = _OPS.get(spec.get("op"), lambda v, r: v)
                measured = np.float32(op(1, spec.get("reference", 0)))
            else:
                measured = np.float32(self._measure(name, spec, now, "delta"))
            factor = spec.get("penalty", 0.0) if measured < 0 else spec.get("reward", 0.0)
            total = np.float32(total + measured * np.float32(factor))
        done = self._done(self.scenario.get("done", {}), now)
        self.prev = dict(now)
        return float(total), done


# == Rainbow: references for fastretro/agents/replay.py and rainbow.py ========================
# Appended for the Rainbow client (issue 28). Each follows the textbook definition: sums over
# leaf ranges for the sum tree, a cumulative sum for prefix sampling, whole episodes for n-step
# transitions (observations rebuilt with FrameStack above), loops over atoms for C51.


def sum_tree(leaves: np.ndarray, size: int) -> np.ndarray:
    """The sum tree of ``leaves`` (padded with 0 to ``size``): node i is the sum of its range."""
    padded = np.zeros(size)
    padded[: len(leaves)] = leaves
    tree = np.zeros(2 * size)
    for node in range(1, 2 * size):
        depth = node.bit_length() - 1
        span = size >> depth
        first = (node - (1 << depth)) * span
        tree[node] = padded[first : first + span].sum()
    return tree


def prefix_sample(priorities: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """The index k with ``cumsum[k - 1] <= target < cumsum[k]`` for each target."""
    cumulative = np.cumsum(priorities)
    idx = np.searchsorted(cumulative, targets, side="right")
    # A target at or past the total: the last index with a non-zero priority.
    return np.minimum(idx, np.flatnonzero(priorities)[-1])


def episode_observations(frames: list, stack: int) -> list:
    """Observations (stack, H, W) of an episode from its frames, as the pool stacks them."""
    fs = FrameStack(stack)
    out = [fs.reset(frames[0][..., None])]
    out += [fs.push(f[..., None]) for f in frames[1:]]
    return [np.moveaxis(o, -1, 0) for o in out]


def nstep_transition(frames, rewards, terminated, t, n, gamma, stack):
    """Transition ``t`` of one episode: (obs, n-step return, next obs, discount).

    ``frames``: the newest frame of each observation so far (the final observation's included
    when the episode is over); ``rewards[k]``: the reward after step k; ``terminated``: the game
    ended the episode (True), a time limit did or it goes on (False). The return sums
    ``gamma^k r[t + k]`` over ``m = min(n, steps left)`` steps; the discount is ``gamma^m``,
    or 0 where those m steps reach the end of a terminated episode.
    """
    obs = episode_observations(frames, stack)
    steps = len(rewards)
    m = min(n, steps - t)
    ret = sum(gamma**k * rewards[t + k] for k in range(m))
    ends = t + m == steps and len(frames) == steps + 1 and terminated
    return obs[t], ret, obs[t + m], 0.0 if ends else gamma**m


class ReplayReference:
    """What a per-env ring of ``ring`` frames holds, from the episodes written into it.

    Each env writes every observation's newest frame in order (an episode's final observation
    included); the last ``ring`` stay. A transition can be drawn once ``n`` more steps are
    written or its episode is over, unless its frame is among the oldest ``stack - 1`` kept
    (their stacks would reach back into frames already overwritten).
    """

    def __init__(self, num_envs: int, ring: int, n: int, stack: int) -> None:
        self.ring, self.n, self.stack = ring, n, stack
        # Per env: episodes as dicts of frames, rewards, terminated, done, and where each frame
        # went in the env's write order.
        self.episodes: list[list[dict]] = [[] for _ in range(num_envs)]
        self.written = [0] * num_envs

    def begin(self, env: int, frame: np.ndarray) -> None:
        """A new episode starts with ``frame``."""
        self.episodes[env].append(
            dict(
                frames=[frame],
                actions=[],
                rewards=[],
                terminated=False,
                done=False,
                pos=[self.written[env]],
            )
        )
        self.written[env] += 1

    def step(self, env, action, reward, terminated, truncated, final_frame, next_frame) -> None:
        """One step: its action and reward, the next frame (after the final one if it ended)."""
        ep = self.episodes[env][-1]
        ep["actions"].append(action)
        ep["rewards"].append(reward)
        if terminated or truncated:
            ep["frames"].append(final_frame)
            ep["pos"].append(self.written[env])
            ep["terminated"], ep["done"] = bool(terminated), True
            self.written[env] += 1
            self.begin(env, next_frame)
        else:
            ep["frames"].append(next_frame)
            ep["pos"].append(self.written[env])
            self.written[env] += 1

    def sampleable(self) -> dict:
        """{slot: (env, episode index, step)} of every transition that can be drawn."""
        out = {}
        for env, episodes in enumerate(self.episodes):
            oldest_allowed = self.written[env] - self.ring + self.stack - 1
            for k, ep in enumerate(episodes):
                steps = len(ep["rewards"])
                for t in range(steps):
                    complete = ep["done"] or t + self.n <= steps
                    if complete and ep["pos"][t] >= oldest_allowed:
                        out[env * self.ring + ep["pos"][t] % self.ring] = (env, k, t)
        return out

    def transition(self, env, k, t, gamma):
        """(obs, action, return, next obs, discount) of step t of env's episode k."""
        ep = self.episodes[env][k]
        obs, ret, next_obs, discount = nstep_transition(
            ep["frames"], ep["rewards"], ep["terminated"], t, self.n, gamma, self.stack
        )
        return obs, ep["actions"][t], ret, next_obs, discount


def categorical_projection(next_probs, returns, discounts, v_min, v_max):
    """C51's projection (Bellemare et al. 2017, Algorithm 1), one atom at a time.

    Each atom z_j of the next state's distribution moves to ``r + discount * z_j``, clipped to
    ``[v_min, v_max]``, and its probability is split between the two nearest atoms in
    proportion to closeness (all of it to one atom where it lands exactly on it).
    """
    batch, atoms = next_probs.shape
    dz = (v_max - v_min) / (atoms - 1)
    z = [v_min + j * dz for j in range(atoms)]
    m = np.zeros((batch, atoms))
    for i in range(batch):
        for j in range(atoms):
            tz = min(v_max, max(v_min, returns[i] + discounts[i] * z[j]))
            b = (tz - v_min) / dz
            lo, hi = int(np.floor(b)), int(np.ceil(b))
            p = next_probs[i, j]
            if lo == hi:
                m[i, lo] += p
            else:
                m[i, lo] += p * (hi - b)
                m[i, hi] += p * (b - lo)
    return m
