# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False
"""The worker's hot loop: wait for commands, run the emulators for them, write to shared memory.

Everything here runs in a worker process, once per agent step, so it is compiled: the frame
loop, the sticky-action draw, the action decoding, a declarative scenario's reward and done,
and the writes into shared memory are C. The emulator is reached through the seam of
fastretro/runtime/backends/base.py (``press``, ``frame``, ``screen``, ``variables``, ...), whose
methods are bound once per env; the preprocessing kernel is the other Python call left.

A worker may run several envs (ALE allows several emulators per process; stable-retro one):
:func:`run_loop` serves each of its envs whose command word is set, and reports each env's
completion on its own, so the parent sees envs, not workers.
"""

import numpy as np
from libc.math cimport INFINITY
from libc.string cimport memset
from posix.time cimport CLOCK_MONOTONIC, clock_gettime, timespec

from sync cimport fr_atomic_cas

from fastretro.errors import InvalidArgumentError
from fastretro.runtime.protocol import (
    RESET_NEXT_EPISODE, ActionMode, Autoreset, Command, Timing
)

# Genesis Plus GX's frame without its picture (fastretro/runtime/headless.py finds them).
ctypedef void (*frame_gen_fn)(int do_skip) noexcept nogil
ctypedef int (*audio_update_fn)(short *buffer) noexcept nogil

# The core's FM chip call, YM_Update(buffer, samples) (fastretro/runtime/headless.py's SilentFM).
ctypedef void (*fm_update_fn)(int *buffer, int length) noexcept nogil

# The protocol's codes as C ints, read from fastretro/runtime/protocol.py: one source for both
# sides of the shared memory.
cdef int CMD_STEP = Command.STEP
cdef int CMD_RESET = Command.RESET
cdef int CMD_CLOSE = Command.CLOSE
cdef int CMD_RESTORE = Command.RESTORE
cdef int CMD_SEQUENCE = Command.SEQUENCE
cdef long long ARG_NEXT_EPISODE = RESET_NEXT_EPISODE
cdef int AUTORESET_NEXT_STEP = Autoreset.NEXT_STEP
cdef int AUTORESET_SAME_STEP = Autoreset.SAME_STEP
cdef int MODE_BITS = ActionMode.BITS
cdef int MODE_INDEX = ActionMode.INDEX
# Timing columns: about ten CLOCK_MONOTONIC reads per step at 25 ns each (vDSO, no syscall).
# The workers' CPU time is NOT read here: two CLOCK_THREAD_CPUTIME_ID reads per step (a
# syscall) cost ~10% of the contest config's throughput (bench/bench_parent.py); the parent
# reads it from /proc when asked instead.
cdef int T_EMULATE = Timing.EMULATE
cdef int T_RAM = Timing.RAM
cdef int T_OBS = Timing.OBS
cdef int T_RESET = Timing.RESET
cdef int T_WAIT = Timing.WAIT
cdef int N_STEPS = Timing.STEPS
cdef int N_FRAMES = Timing.FRAMES
cdef int N_RESETS = Timing.RESETS
cdef int T_WAKE = Timing.WAKE
cdef int N_WAKEUPS = Timing.WAKEUPS


def protocol_codes():
    """The codes this module acts on, as read at import (tests compare them with protocol.py)."""
    return {
        "Command": {"STEP": CMD_STEP, "RESET": CMD_RESET, "CLOSE": CMD_CLOSE,
                    "RESTORE": CMD_RESTORE, "SEQUENCE": CMD_SEQUENCE},
        "Autoreset": {"NEXT_STEP": AUTORESET_NEXT_STEP, "SAME_STEP": AUTORESET_SAME_STEP},
        "ActionMode": {"BITS": MODE_BITS, "INDEX": MODE_INDEX},
        "Timing": {"EMULATE": T_EMULATE, "RAM": T_RAM, "OBS": T_OBS, "RESET": T_RESET,
                   "WAIT": T_WAIT, "STEPS": N_STEPS, "FRAMES": N_FRAMES, "RESETS": N_RESETS,
                   "WAKE": T_WAKE, "WAKEUPS": N_WAKEUPS},
    }


def reset_next_episode_code():
    """The reset ``arg`` this module reads as "the next episode" (protocol.RESET_NEXT_EPISODE)."""
    return ARG_NEXT_EPISODE


# stable-retro's scenario operations (fastretro/runtime/scenario.py holds the names).
cdef enum:
    OP_NOOP = 0
    OP_EQUAL = 1
    OP_NEGATIVE_EQUAL = 2
    OP_NOT_EQUAL = 3
    OP_LESS_THAN = 4
    OP_GREATER_THAN = 5
    OP_LESS_OR_EQUAL = 6
    OP_GREATER_OR_EQUAL = 7
    OP_NONZERO = 8
    OP_ZERO = 9
    OP_POSITIVE = 10
    OP_NEGATIVE = 11
    OP_SIGN = 12


cdef inline long long _calculate(long long op, long long reference, long long value) noexcept nogil:
    # stable-retro's calculate() (src/utils.cpp).
    if op == OP_EQUAL:
        return value == reference
    if op == OP_NEGATIVE_EQUAL:
        return value == -reference
    if op == OP_NOT_EQUAL:
        return value != reference
    if op == OP_LESS_THAN:
        return value < reference
    if op == OP_GREATER_THAN:
        return value > reference
    if op == OP_LESS_OR_EQUAL:
        return value <= reference
    if op == OP_GREATER_OR_EQUAL:
        return value >= reference
    if op == OP_NONZERO:
        return value != 0
    if op == OP_ZERO:
        return value == 0
    if op == OP_POSITIVE:
        return value > 0
    if op == OP_NEGATIVE:
        return value < 0
    if op == OP_SIGN:
        return -1 if value < 0 else (1 if value > 0 else 0)
    return value


cdef class VariableScenario:
    """A declarative scenario's reward and done, evaluated on the RAM variables' values.

    What stable-retro's ``Scenario::update`` computes, without ``data.update_ram``'s RAM snapshot
    (fastretro/runtime/scenario.py says why). The deltas are against the values of the previous
    evaluation, or of the episode's start: the same two points stable-retro's snapshots take.
    """

    cdef tuple names
    cdef long long[::1] now, prev
    cdef const long long[:, ::1] terms
    cdef const float[:, ::1] factors
    cdef float time_reward
    cdef object done_root

    def __init__(self, plan):
        """Args: plan: a :class:`fastretro.runtime.scenario.ScenarioPlan`."""
        self.names = tuple(plan.names)
        self.now = np.zeros(len(self.names), np.int64)
        self.prev = np.zeros(len(self.names), np.int64)
        self.terms = plan.reward_terms
        self.factors = plan.reward_factors
        self.time_reward = plan.time_reward
        self.done_root = _compile_node(plan.done)
        # The loop reads without bounds checks: a plan must not index past its variables.
        tests = [plan.reward_terms] + _node_tests(plan.done)
        if any(t.shape[0] and not 0 <= t[:, 0].min() <= t[:, 0].max() < len(self.names)
               for t in tests):
            raise ValueError(f"scenario plan indexes variables outside {self.names}")

    cdef void read(self, dict values) except *:
        cdef Py_ssize_t j
        for j in range(len(self.names)):
            self.now[j] = values[self.names[j]]

    cdef void restart(self, dict values) except *:
        """The episode starts from these values."""
        self.read(values)
        self.prev[:] = self.now

    cdef inline long long _measure(self, const long long[:] test) noexcept:
        cdef long long var = test[0]
        cdef long long value = self.now[var] - self.prev[var] if test[1] else self.now[var]
        return _calculate(test[2], test[3], value)

    cdef float reward(self) noexcept:
        # float32 arithmetic throughout, as stable-retro's RewardSpec::calculate.
        cdef float total = self.time_reward, measured
        cdef Py_ssize_t k
        for k in range(self.terms.shape[0]):
            measured = <float>self._measure(self.terms[k])
            if measured < 0:
                measured *= self.factors[k, 1]
            elif measured > 0:
                measured *= self.factors[k, 0]
            total += measured
        return total

    cdef bint _node_done(self, tuple node) except -1:
        # stable-retro's Scenario::isDone: the first test that decides an any/all wins.
        cdef bint is_all = node[0], hit
        cdef const long long[:, ::1] tests = node[1]
        cdef Py_ssize_t k
        for k in range(tests.shape[0]):
            hit = self._measure(tests[k]) > 0
            if hit != is_all:
                return hit
        for child in node[2]:
            hit = self._node_done(child)
            if hit != is_all:
                return hit
        return is_all

    cdef bint done(self) except -1:
        return self._node_done(self.done_root)

    cdef void advance(self) noexcept:
        """The current values become the base of the next deltas."""
        self.prev[:] = self.now

    def evaluate(self, dict values):
        """One evaluation, as after one ``update_ram``: ``(reward, done)`` (for tests)."""
        self.read(values)
        result = (self.reward(), bool(self.done()))
        self.advance()
        return result

    def start(self, dict values):
        """Start an episode from these values (for tests)."""
        self.restart(values)


def _node_tests(node):
    return [node.tests] + [t for child in node.children for t in _node_tests(child)]


def _compile_node(node):
    # Nested tuples (all, tests, children): cheap to walk from C once per step.
    return (bool(node.all), np.ascontiguousarray(node.tests, np.int64),
            tuple(_compile_node(child) for child in node.children))


cdef inline long long _now(int clock) noexcept nogil:
    cdef timespec ts
    clock_gettime(clock, &ts)
    return <long long>ts.tv_sec * 1000000000 + ts.tv_nsec


cdef class UndrawnFrame:
    """Genesis Plus GX's ``retro_run`` less the picture: the frame with ``do_skip``, then the
    sound chips (their timers are game state; the samples go to a scratch buffer)."""

    cdef frame_gen_fn frame_gen
    cdef audio_update_fn audio_update
    cdef short[::1] scratch

    def __init__(self, headless, int scratch_values):
        """Args: headless: a :class:`fastretro.runtime.headless.HeadlessFrame` of this process."""
        self.frame_gen = <frame_gen_fn><size_t>headless.frame_gen
        self.audio_update = <audio_update_fn><size_t>headless.audio_update
        self.scratch = np.zeros(scratch_values, np.int16)

    def __call__(self):
        self.frame_gen(1)
        self.audio_update(&self.scratch[0])


cdef class EnvStepper:
    """One env: its emulator and its row of every shared array.

    The stepper owns the per-episode state (step count, the previous action for sticky frames,
    whether a next-step autoreset is due) and writes its env's row of every shared array.
    """

    cdef readonly int index
    cdef int num_buttons, frameskip, autoreset, action_mode, draw_from
    cdef bint redraw_at_end
    cdef object before_frame
    cdef double sticky_prob, reward_scale, clip_reward, x_now, x_max
    cdef bint max_pool, per_frame, have_prev, needs_reset, backtracking, observe
    cdef bint frame_done, snapshots
    # The DQN-era protocol (EnvConfig.episodic_life, noop_max, fire_reset, sign_reward).
    cdef bint episodic_life, sign_reward, continue_game
    cdef int noop_max
    cdef long long fire_mask, lives
    cdef object read_lives
    cdef double[::1] raw_rewards
    cdef long long[::1] lives_out, final_lives
    cdef unsigned char[::1] game_over_out, final_game_over
    cdef long long episode_steps, max_episode_steps, best_step, mask_new, mask_prev
    cdef double episode_return, best_return
    cdef object best_state, best_screen, snap_np, snap_screen
    cdef long long[::1] snap_len, snap_step
    cdef double[::1] snap_return
    cdef object emu, rng, rng_random, press, frame, screen, obs_screen, variables
    cdef object save_state, load_state
    cdef object start, own_scenario, game_over
    cdef object info_names, write_obs, write_final_obs, values
    cdef VariableScenario scenario
    cdef const long long[::1] action_masks, action_offsets
    cdef const long long[:, ::1] actions
    cdef const long long[:, :, ::1] seq_actions
    cdef const long long[::1] seq_len
    cdef double[:, ::1] seq_rewards
    cdef long long[::1] seq_steps
    cdef double[::1] rewards
    cdef unsigned char[::1] terminated, truncated
    cdef long long[:, ::1] info, final_info
    cdef long long[::1] timing

    def __init__(self, int index, config, emulator, table, plan, bint per_frame, int autoreset,
                 info_names, dict views, rng, write_obs, write_final_obs, long long fire_mask=0):
        """Bind one env's emulator to its rows of the shared arrays.

        Args:
            index: the env's index in the pool.
            config: the pool's :class:`fastretro.config.EnvConfig` (frame timing, rewards,
                snapshots: read here, once).
            emulator: a :class:`fastretro.runtime.backends.base.Emulator` of this process.
            table: the env's :class:`fastretro.runtime.actions.ActionTable`.
            plan: a :class:`fastretro.runtime.scenario.ScenarioPlan` this worker evaluates, or
                ``None``: the emulator's own scenario engine (``emulator.scenario_update()``).
            per_frame: evaluate the scenario after every frame (else once per agent step).
            autoreset: the pool's :class:`fastretro.runtime.protocol.Autoreset` code.
            info_names: the variables written to the ``info`` row, in its column order.
            views: the shared arrays (actions, rewards, terminated, truncated, info,
                final_info, timing, the sequence arrays and the snapshot slot).
            rng: ``numpy.random.Generator`` for the sticky-frame draws.
            write_obs: ``write_obs(screen, prev_screen_or_None, fill)`` writes this env's
                observation (``fill``: after a reset); ``None``: no observations at all.
            write_final_obs: copies the current observation into the final-observation slot.
            fire_mask: the buttons of the game's FIRE action (``fire_reset``), or 0: none.
        """
        self.index = index
        self.emu = emulator
        self.start = emulator.start
        self.press = emulator.press
        self.frame = emulator.frame
        self.screen = emulator.screen
        # Observations come from the picture the writer reads (its ``picture``: ALE's colour
        # codes, or an emulator's gray; fastretro/runtime/worker.py observation_picture);
        # snapshots keep the RGB screen.
        picture = getattr(write_obs, "picture", None)
        self.obs_screen = picture if picture is not None else emulator.screen
        self.variables = emulator.variables
        # An emulator that stops at its own end of game (ALE runs no frame after it) ends the
        # episode there too, should the scenario's end come later.
        self.game_over = getattr(emulator, "game_over", None)
        self.save_state = emulator.save_state
        self.load_state = emulator.load_state
        self.num_buttons = len(emulator.buttons)
        self.set_rng(rng)
        self.frameskip = config.frameskip
        self.sticky_prob = config.sticky_prob
        self.max_pool = config.max_pool
        self.per_frame = per_frame
        self.max_episode_steps = config.max_episode_steps or 0
        self.autoreset = autoreset
        self.info_names = tuple(info_names)
        self.action_mode = table.mode
        self.action_masks = table.masks
        self.action_offsets = table.offsets
        self.backtracking = config.allow_backtracking
        self.reward_scale = config.reward_scale
        self.clip_reward = config.clip_reward or 0.0
        self.sign_reward = config.sign_reward
        self.episodic_life = config.episodic_life
        self.noop_max = config.noop_max
        self.fire_mask = fire_mask if config.fire_reset else 0
        self.continue_game = False
        self.lives = 0
        # ALE counts lives itself; stable-retro's games have a ``lives`` RAM variable (the pool
        # checks that they do before it starts). Not a method of this object: a stepper that
        # referred to itself would outlive its worker until a garbage collection, and with it
        # the emulator, which stable-retro allows once per process (worker threads,
        # fastretro/runtime/threads.py, start the next one in the same process).
        variables = self.variables
        self.read_lives = getattr(emulator, "lives", None) or (lambda: variables()["lives"])
        self.raw_rewards = views["raw_rewards"]
        self.lives_out = views["lives"]
        self.game_over_out = views["game_over"]
        self.final_lives = views["final_lives"]
        self.final_game_over = views["final_game_over"]
        self.observe = write_obs is not None
        self.scenario = VariableScenario(plan) if plan is not None else None
        self.own_scenario = None if plan is not None else emulator.scenario_update
        self.values = None
        self.actions = views["actions"]
        self.seq_actions = views["seq_actions"]
        self.seq_len = views["seq_len"]
        self.seq_rewards = views["seq_rewards"]
        self.seq_steps = views["seq_steps"]
        self.rewards = views["rewards"]
        self.terminated = views["terminated"]
        self.truncated = views["truncated"]
        self.info = views["info"]
        self.final_info = views["final_info"]
        self.timing = views["timing"][index]
        self.write_obs = write_obs
        self.write_final_obs = write_final_obs
        self.have_prev = False
        self.needs_reset = False
        self.episode_steps = 0
        self.mask_new = self.mask_prev = 0
        self.snapshots = config.snapshot_best
        self.snap_np = views["snap"][index]
        self.snap_screen = views["snap_screen"][index]
        self.snap_len = views["snap_len"]
        self.snap_step = views["snap_step"]
        self.snap_return = views["snap_return"]
        self._forget_best()
        # draw_from: the first frame of a step whose picture anyone reads. Without
        # observations, none; with them, the last (and the one before it for max-pooling).
        # With per-frame evaluation an episode may end on an earlier frame, whose picture is
        # then the observation: redraw_at_end keeps the state before each undrawn frame to run
        # that one frame again, drawn (a save state ~5 us, against ~200 us saved per frame).
        self.draw_from = 0
        self.redraw_at_end = False
        if emulator.skips_drawing:
            if not self.observe:
                self.draw_from = self.frameskip
            else:
                self.draw_from = self.frameskip - (2 if self.max_pool else 1)
                self.redraw_at_end = self.per_frame

    def set_rng(self, rng):
        self.rng = rng
        self.rng_random = rng.random

    cdef long long _decode_action(self, const long long[:] row):
        # Every action set is one lookup into a table of button masks (runtime/actions.py).
        cdef int b, g
        cdef long long mask = 0
        if self.action_mode == MODE_BITS:
            # One 0/1 per button; the table holds data.filter_action of each pressed mask.
            for b in range(self.num_buttons):
                if row[b]:
                    mask |= 1 << b
            return self.action_masks[mask]
        if self.action_mode == MODE_INDEX:
            return self.action_masks[row[0]]
        for g in range(self.action_offsets.shape[0]):
            mask |= self.action_masks[self.action_offsets[g] + row[g]]
        return mask

    cdef double _transform_reward(self, double r):
        # retro-baselines' AllowBacktracking: reward only progress beyond the episode's best.
        if self.backtracking:
            self.x_now += r
            r = self.x_now - self.x_max if self.x_now > self.x_max else 0.0
            if self.x_now > self.x_max:
                self.x_max = self.x_now
        r *= self.reward_scale
        if self.clip_reward > 0.0:
            r = min(max(r, -self.clip_reward), self.clip_reward)
        if self.sign_reward:
            r = (r > 0.0) - (r < 0.0)
        return r

    cdef void _start_game(self) except *:
        # EnvPool's Reset: a new game unless a lost life ended the training episode (then the
        # game goes on), 1..noop_max no-op frames (one fewer before FIRE; a game that ends
        # during them starts again), one FIRE frame. Their rewards count for nobody.
        cdef int k, noops = 0
        if not self.continue_game:
            self.start()
        if self.noop_max > 0:
            noops = <int>self.rng.integers(1, self.noop_max + 1) - (self.fire_mask != 0)
        if noops > 0 or self.fire_mask:
            self.press(0)
            for k in range(noops):
                self.frame(True)
                if self.game_over is not None and self.game_over():
                    self.start()
                    self.continue_game = False
            if self.fire_mask:
                self.press(self.fire_mask)
                self.frame(True)
            if self.own_scenario is not None:
                self.own_scenario()  # the engine's reward and end of these frames: dropped

    cdef void _begin_episode(self) except *:
        cdef long long t0 = _now(CLOCK_MONOTONIC)
        cdef bint same_game = self.continue_game
        self._start_game()
        same_game = same_game and self.continue_game
        self.continue_game = False
        if self.observe:
            # Going on after a lost life pushes the frame onto the stack, as EnvPool does.
            self.write_obs(self.obs_screen(), None, not same_game)
        self.values = self.variables()
        if self.scenario is not None:
            self.scenario.restart(self.values)
        self._write_info(self.info)
        self.values = None
        if self.episodic_life:
            self.lives = self.read_lives()
            self.lives_out[self.index] = self.lives
            self.game_over_out[self.index] = 0
        if not same_game:
            self.episode_steps = 0
        self.have_prev = False
        self.x_now = 0.0
        self.x_max = 0.0
        self._forget_best()
        self.timing[T_RESET] += _now(CLOCK_MONOTONIC) - t0
        self.timing[N_RESETS] += 1

    cdef void _forget_best(self) noexcept:
        self.episode_return = 0.0
        self.best_return = -INFINITY
        self.best_step = 0
        self.best_state = None
        self.best_screen = None

    cdef void _track_best(self, double reward) except *:
        # The state where the episode FIRST reaches its highest return: the end of the prefix
        # JERK remembers (its best_sequence takes the first index of the maximum).
        self.episode_return += reward
        if self.episode_return > self.best_return:
            self.best_return = self.episode_return
            self.best_step = self.episode_steps
            self.best_state = self.save_state()  # ~4 us on Genesis
            if self.observe:
                # A loaded state shows no frame until the next frame runs: keep the screen too.
                self.best_screen = np.array(self.screen())

    cdef void _publish_best(self) except *:
        # Every episode has taken a step by its end, and its first step set best_state.
        cdef Py_ssize_t n = len(self.best_state)
        cdef int i = self.index
        if n > self.snap_np.shape[0]:
            raise RuntimeError(
                f"the emulator's save state grew to {n} bytes, past the {self.snap_np.shape[0]} "
                f"bytes the pool reserved for it at startup"
            )
        self.snap_np[:n] = np.frombuffer(self.best_state, np.uint8)
        self.snap_len[i] = n
        self.snap_step[i] = self.best_step
        self.snap_return[i] = self.best_return
        if self.observe:
            self.snap_screen[...] = self.best_screen

    def restore(self):
        """Load the save state the parent wrote into this env's snapshot slot, mid-episode.

        The episode goes on from the snapshot's step and return; the scenario's deltas start
        from the loaded RAM; the observation is the snapshot's screen, stacked as after a
        reset. Only sound when this worker evaluates the scenario (its state is all in
        emulator memory); the pool checks that before sending the command.
        """
        cdef int i = self.index
        cdef long long t0 = _now(CLOCK_MONOTONIC)
        if self.scenario is None:
            raise RuntimeError("restore needs a scenario this worker evaluates itself")
        state = bytes(self.snap_np[: self.snap_len[i]])
        try:
            self.load_state(state)
        except InvalidArgumentError as exc:
            # The parent re-raises it as the same type: say which env refused the state.
            raise InvalidArgumentError(f"Cannot restore env {i}: {exc}") from None
        self.values = self.variables()
        self.scenario.restart(self.values)
        self._write_info(self.info)
        self.values = None
        self.episode_steps = self.snap_step[i]
        self.have_prev = False
        self.needs_reset = False
        self.x_now = 0.0
        self.x_max = 0.0
        self.episode_return = self.best_return = self.snap_return[i]
        self.best_step = self.episode_steps
        self.best_state = state
        if self.observe:
            self.best_screen = self.snap_screen.copy()
            self.write_obs(self.best_screen, None, True)
        self.rewards[i] = 0.0
        self.terminated[i] = 0
        self.truncated[i] = 0
        self.timing[T_RESET] += _now(CLOCK_MONOTONIC) - t0

    cdef double _evaluate(self) except *:
        # The reward of the frames since the last evaluation; sets frame_done, and values
        # (the variables now) when it read them.
        cdef double reward
        if self.scenario is None:
            reward, self.frame_done = self.own_scenario()
            self.values = None
            return reward
        self.values = self.variables()
        self.scenario.read(self.values)
        reward = self.scenario.reward()
        self.frame_done = self.scenario.done()
        self.scenario.advance()
        return reward

    cdef void _write_info(self, long long[:, ::1] info) except *:
        # The values read by the last evaluation are still current: no frame ran since.
        cdef dict values = self.values if self.values is not None else self.variables()
        cdef Py_ssize_t j
        for j in range(len(self.info_names)):
            info[self.index, j] = values.get(self.info_names[j], 0)

    def reset(self):
        """Start a new episode and write its first observation."""
        self._begin_episode()
        self.needs_reset = False
        self.rewards[self.index] = 0.0
        self.raw_rewards[self.index] = 0.0
        self.terminated[self.index] = 0
        self.truncated[self.index] = 0

    def step(self):
        """Run one agent step (``frameskip`` emulator frames) and write its results."""
        self._step(self.actions[self.index])

    def run_sequence(self):
        """Run this env's sequence of actions, one agent step each, without the parent.

        Stops after ``seq_len`` steps or at the step that ends the episode (which resets the
        env within that step under SAME_STEP autoreset). Each step is exactly what ``step``
        does with that action; ``seq_rewards`` gets every step's reward, ``seq_steps`` how many
        ran, and ``rewards`` their total, so the parent collects it like a step.
        """
        cdef int i = self.index
        cdef long long j, n = self.seq_len[i]
        cdef double total = 0.0
        for j in range(n):
            self._step(self.seq_actions[i, j])
            self.seq_rewards[i, j] = self.rewards[i]
            total += self.rewards[i]
            if self.terminated[i] or self.truncated[i]:
                n = j + 1
                break
        self.seq_steps[i] = n
        self.rewards[i] = total

    cdef void _step(self, const long long[:] row) except *:
        cdef int f
        cdef bint keep_prev, done = False, trunc, life_lost = False
        cdef long long lives
        cdef double total = 0.0
        cdef object prev_screen = None
        cdef int i = self.index
        cdef long long t = _now(CLOCK_MONOTONIC), t1
        cdef long long[::1] timing = self.timing
        cdef int frames = 0

        if self.needs_reset:
            # Next-step autoreset: this step's action is ignored, as in gymnasium.
            self.reset()
            return

        self.mask_new = self._decode_action(row)
        # Sticky frame timing exactly as the Retro Contest's StochasticFrameSkip: on the first
        # frame of a step, keep the previous action with probability sticky_prob.
        keep_prev = (self.sticky_prob > 0.0 and self.have_prev
                     and not (self.rng_random() > self.sticky_prob))
        self.press(self.mask_prev if keep_prev else self.mask_new)
        for f in range(self.frameskip):
            if f == 1 and keep_prev:
                self.press(self.mask_new)
            if f < self.draw_from:
                if self.redraw_at_end:
                    self.before_frame = self.save_state()
                self.frame(False)
            else:
                self.frame(True)
            frames += 1
            t1 = _now(CLOCK_MONOTONIC)
            timing[T_EMULATE] += t1 - t
            t = t1
            if self.observe and self.max_pool and f == self.frameskip - 2:
                prev_screen = self.obs_screen()
                t1 = _now(CLOCK_MONOTONIC)
                timing[T_OBS] += t1 - t
                t = t1
            if self.per_frame:
                total += self._evaluate()
                t1 = _now(CLOCK_MONOTONIC)
                timing[T_RAM] += t1 - t
                t = t1
                if self.frame_done:
                    done = True
                    if self.redraw_at_end and f < self.draw_from:
                        # The episode ended on an undrawn frame: run it again, drawn, from the
                        # state before it (same buttons, still held; the emulator is
                        # deterministic, and the scenario has already counted this frame).
                        self.load_state(self.before_frame)
                        self.frame(True)
                    break
        if not self.per_frame:
            # The scenario's reward is a sum of per-frame deltas of RAM variables, so one read
            # per agent step gives the same total (tests/test_pool.py pins this).
            total = self._evaluate()
            done = self.frame_done
        if not done and self.game_over is not None and self.game_over():
            done = True
        self.mask_prev = self.mask_new
        self.have_prev = True
        self.episode_steps += 1
        trunc = self.max_episode_steps > 0 and self.episode_steps >= self.max_episode_steps
        if self.episodic_life:
            # EnvPool's and SB3's rule: a life lost, with lives left, ends the training episode;
            # the next reset goes on with this game (see _start_game).
            lives = self.read_lives()
            life_lost = 0 < lives < self.lives
            self.lives = lives
            self.lives_out[i] = lives
            self.game_over_out[i] = done
            self.continue_game = life_lost and not done and not trunc
        self._write_info(self.info)
        self.values = None
        self.raw_rewards[i] = total
        self.rewards[i] = self._transform_reward(total)
        self.terminated[i] = done or life_lost
        self.truncated[i] = trunc
        if self.snapshots:
            self._track_best(self.rewards[i])
        t1 = _now(CLOCK_MONOTONIC)
        timing[T_RAM] += t1 - t
        t = t1
        if self.observe:
            self.write_obs(self.obs_screen(), prev_screen, False)
            timing[T_OBS] += _now(CLOCK_MONOTONIC) - t
        timing[N_STEPS] += 1
        timing[N_FRAMES] += frames
        if done or trunc or life_lost:
            if self.snapshots:
                self._publish_best()
            if self.autoreset == AUTORESET_NEXT_STEP:
                self.needs_reset = True
            elif self.autoreset == AUTORESET_SAME_STEP:
                if self.observe:
                    self.write_final_obs()
                self.final_info[i, :] = self.info[i, :]
                # The step's raw reward stays where it is: it is this step's, as its reward.
                self.final_lives[i] = self.lives_out[i]
                self.final_game_over[i] = self.game_over_out[i]
                self._begin_episode()


# -- the FM chip without its sound ----------------------------------------------------------
# One core per process, so module state: the real chip's update and its mode register.
cdef fm_update_fn _fm_real = NULL
cdef const int *_fm_mode = NULL
cdef long long _fm_silenced = 0, _fm_forwarded = 0


cdef void _fm_update_unless_timers_stopped(int *buffer, int length) noexcept nogil:
    global _fm_silenced, _fm_forwarded
    # A running timer (mode bit 0: timer A, bit 1: timer B) is all a game can see of the chip
    # (its status register holds their overflow flags), and only the real chip advances it.
    # With both stopped the call would only synthesize samples nobody hears: silence instead.
    if _fm_mode[0] & 0x03:
        _fm_forwarded += 1
        _fm_real(buffer, length)
    else:
        _fm_silenced += 1
        memset(buffer, 0, 2 * length * sizeof(int))  # stereo samples


def install_silent_fm(silent_fm):
    """Point the loaded core's ``YM_Update`` at the function above.

    Args:
        silent_fm: a :class:`fastretro.runtime.headless.SilentFM` found in this process.
    """
    global _fm_real, _fm_mode
    cdef fm_update_fn *slot = <fm_update_fn *><size_t>silent_fm.slot
    _fm_real = <fm_update_fn><size_t>silent_fm.update
    _fm_mode = <const int *><size_t>silent_fm.mode
    slot[0] = _fm_update_unless_timers_stopped


def silent_fm_calls():
    """``(silenced, forwarded)``: the FM chip's updates since :func:`install_silent_fm`."""
    return _fm_silenced, _fm_forwarded


def run_loop(list steppers, handshake, int[::1] cmd, long long[::1] arg, double poll_s,
             parent_alive, on_reset_seed, double spin=0.0):
    """Serve this worker's envs until CLOSE, or until ``parent_alive()`` turns False.

    Each wake-up runs the command of every env of ``steppers`` whose ``cmd`` word is set, and
    reports each env done on its own (the parent counts envs, not workers). ``spin``: seconds
    to watch for the next wake-up before sleeping (only where every worker and the parent have
    a core of their own).

    Returns:
        "closed" or "orphaned".
    """
    cdef int c, i, k, n = len(steppers)
    cdef long long t, waited, latency
    cdef bint closing
    cdef EnvStepper s
    wait = handshake.wait_command
    woken_at = handshake.woken_at
    done = handshake.done
    while True:
        t = _now(CLOCK_MONOTONIC)
        woken = wait(poll_s, spin)
        latency = _now(CLOCK_MONOTONIC)
        waited = latency - t
        latency -= woken_at()
        for k in range(n):
            s = <EnvStepper>steppers[k]
            s.timing[T_WAIT] += waited
        if not woken:
            if not parent_alive():
                return "orphaned"
            continue
        closing = False
        for k in range(n):
            s = <EnvStepper>steppers[k]
            i = s.index
            c = cmd[i]
            if c == 0:
                continue  # woken for a batch that does not include this env
            if 0 <= latency < 1000000000:  # a wake-up that reached us, not a stale stamp
                s.timing[T_WAKE] += latency
                s.timing[N_WAKEUPS] += 1
            if c == CMD_STEP:
                s._step(s.actions[i])
            elif c == CMD_SEQUENCE:
                s.run_sequence()
            elif c == CMD_RESET:
                if arg[i] != ARG_NEXT_EPISODE:
                    s.continue_game = False  # a new game, unless the next episode is asked
                if arg[i] >= 0:
                    on_reset_seed(i, arg[i])
                s.reset()
            elif c == CMD_RESTORE:
                s.restore()
            elif c == CMD_CLOSE:
                closing = True
            # Clearing the command tells the parent which envs are still busy on a timeout. It
            # is a compare-and-swap so that a CLOSE the parent wrote meanwhile (closing an
            # async pool with steps in flight) is not erased: the next wait sees it.
            fr_atomic_cas(&cmd[i], c, 0)
            done(i)
        if closing:
            return "closed"
