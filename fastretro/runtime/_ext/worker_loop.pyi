"""Type stub of ext/worker_loop.pyx: the worker's compiled hot loop."""

from collections.abc import Callable
from typing import Any

import numpy as np

from fastretro.runtime._ext.handshake import Handshake

def protocol_codes() -> dict[str, dict[str, int]]: ...
def reset_next_episode_code() -> int: ...

class VariableScenario:
    """A declarative scenario's reward and done, evaluated on the RAM variables' values."""

    def __init__(self, plan: Any) -> None: ...
    def evaluate(self, values: dict[str, int]) -> tuple[float, bool]: ...
    def start(self, values: dict[str, int]) -> None: ...

class UndrawnFrame:
    """Genesis Plus GX's ``retro_run`` less the picture."""

    def __init__(self, headless: Any, scratch_values: int) -> None: ...
    def __call__(self) -> None: ...

class EnvStepper:
    """One env: its emulator and its row of every shared array."""

    index: int
    def __init__(
        self,
        index: int,
        config: Any,
        emulator: Any,
        table: Any,
        plan: Any,
        per_frame: bool,
        autoreset: int,
        info_names: tuple[str, ...],
        views: dict[str, np.ndarray],
        rng: np.random.Generator,
        write_obs: Callable[[np.ndarray, np.ndarray | None, bool], None] | None,
        write_final_obs: Callable[[], None] | None,
        fire_mask: int = 0,
    ) -> None: ...
    def set_rng(self, rng: np.random.Generator) -> None: ...
    def reset(self) -> None: ...
    def step(self) -> None: ...
    def run_sequence(self) -> None: ...
    def restore(self) -> None: ...

def install_silent_fm(silent_fm: Any) -> None: ...
def silent_fm_calls() -> tuple[int, int]: ...
def run_loop(
    steppers: list[EnvStepper],
    handshake: Handshake,
    cmd: np.ndarray,
    arg: np.ndarray,
    poll_s: float,
    parent_alive: Callable[[], bool],
    on_reset_seed: Callable[[int, int], None],
    spin: float = 0.0,
) -> str: ...
