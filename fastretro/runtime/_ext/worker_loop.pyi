"""Type stub of ext/worker_loop.pyx: the worker's compiled hot loop."""

from collections.abc import Callable
from typing import Any

import numpy as np

from fastretro.runtime._ext.handshake import Handshake

CMD_STEP: int
CMD_RESET: int
CMD_CLOSE: int
AUTORESET_NEXT_STEP: int
AUTORESET_SAME_STEP: int
AUTORESET_DISABLED: int
MODE_BITS: int
MODE_INDEX: int
MODE_GROUPS: int
TIMING_WIDTH: int

class VariableScenario:
    """A declarative scenario's reward and done, evaluated on the RAM variables' values."""

    def __init__(self, plan: Any) -> None: ...
    def evaluate(self, values: dict[str, int]) -> tuple[float, bool]: ...
    def start(self, values: dict[str, int]) -> None: ...

class EnvStepper:
    """One emulator and its slice of the shared buffers."""

    def __init__(
        self,
        index: int,
        env: Any,
        rng: np.random.Generator,
        opts: dict[str, Any],
        views: dict[str, np.ndarray],
        write_obs: Callable[[np.ndarray, np.ndarray | None, bool], None] | None,
        write_final_obs: Callable[[], None] | None,
    ) -> None: ...
    def set_rng(self, rng: np.random.Generator) -> None: ...
    def reset(self) -> None: ...
    def step(self) -> None: ...

def run_loop(
    stepper: EnvStepper,
    handshake: Handshake,
    cmd: np.ndarray,
    arg: np.ndarray,
    index: int,
    poll_s: float,
    parent_alive: Callable[[], bool],
    on_reset_seed: Callable[[int], None],
) -> str: ...
