"""CMA-ES's state (pycma) as tensors and plain data, and an ES rebuilt from it: no pickle.

World Models' ``controller.pt`` keeps the evolution strategy so that ``evolve`` can continue
it. A pickle of the ES would make the checkpoint able to run code when opened; instead
:func:`es_state` keeps what the search needs to go on: the arguments the ES was made with (x0,
sigma0, the options), every number and numeric array of the ES and of its pycma-owned parts
(the sampler's C, B and D, the step-size adaptation's path, the evolution path, the counters,
the best solution, ...), and numpy's global generator, which pycma samples from.
:func:`es_from_state` makes a fresh ES from the arguments and sets those values back on it;
tests/agents/test_checkpoint_safety.py pins that the rebuilt ES asks for the same candidates as the
original, generation after generation.

Strings are left out on purpose: pycma evaluates option strings as Python expressions
(``"4 + 3 * log(N)"``), so a state from a file sets only numbers and arrays.
"""

from __future__ import annotations

import numpy as np

from fastretro.agents.checkpoints import plain
from fastretro.agents.common import torch
from fastretro.errors import InvalidArgumentError

__all__ = ["es_from_state", "es_state"]

# Not the search's state: the logger writes files, the timer measures wall-clock.
_NOT_STATE = ("logger", "timer")


def _values(obj) -> dict:
    """The attributes of ``obj`` that have a plain form without strings (the others: skipped)."""
    out = {}
    for name, value in vars(obj).items():
        try:
            out[name] = plain(value, strings=False)
        except TypeError:
            continue  # objects (parts, functions): parts are kept on their own
    return out


def _parts(es) -> dict:
    """The pycma objects an ES holds (sampler, step-size adaptation, best solution, ...)."""
    return {
        name: value
        for name, value in vars(es).items()
        if name not in _NOT_STATE
        and type(value).__module__.startswith("cma.")
        and hasattr(value, "__dict__")
    }


def es_state(es, rng_state: tuple | None = None) -> dict:
    """What a ``cma.CMAEvolutionStrategy`` needs to continue, as tensors and plain data.

    ``rng_state``: numpy's global generator state to keep with it (default: the current one),
    as ``np.random.get_state()`` gives it.
    """
    rng_state = np.random.get_state() if rng_state is None else rng_state
    name, keys, pos, has_gauss, cached = rng_state
    return {
        "x0": torch.from_numpy(np.array(es.inputargs["x0"], np.float64)),
        "sigma0": float(es.inputargs["sigma0"]),
        "options": plain(dict(es.inopts), strings=False),
        "attributes": _values(es),
        "parts": {name: _values(part) for name, part in _parts(es).items()},
        "numpy_random_state": [
            name,
            torch.from_numpy(np.asarray(keys, np.int64)),
            int(pos),
            int(has_gauss),
            float(cached),
        ],
    }


def _back(value, like):
    """A value of :func:`es_state` as the ES held it: arrays for tensors, numpy scalars kept."""
    if isinstance(value, torch.Tensor):
        return value.numpy()
    if isinstance(value, dict):
        return {k: _back(v, None) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        items = [_back(v, None) for v in value]
        return tuple(items) if isinstance(like, tuple) else items
    if isinstance(like, (np.bool_, np.integer, np.floating)) and type(value) in (bool, int, float):
        return type(like)(value)
    return value


def _plain_only(value) -> bool:
    """Whether ``value`` holds only tensors, numbers, None and containers of those."""
    if isinstance(value, torch.Tensor) or value is None or type(value) in (bool, int, float):
        return True
    if isinstance(value, (list, tuple)):
        return all(_plain_only(v) for v in value)
    if isinstance(value, dict):
        return all(type(k) is str and _plain_only(v) for k, v in value.items())
    return False


def _check(state, path: str) -> None:
    bad = f"{path!r} does not hold a CMA-ES state:"
    if not isinstance(state, dict):
        raise InvalidArgumentError(f"{bad} expected a dict, got {type(state).__name__}")
    kinds = {
        "x0": torch.Tensor,
        "sigma0": (int, float),
        "options": dict,
        "attributes": dict,
        "parts": dict,
        "numpy_random_state": list,
    }
    for key, kind in kinds.items():
        if not isinstance(state.get(key), kind):
            raise InvalidArgumentError(f"{bad} its {key!r} is missing or of another type")
    for key in ("options", "attributes", "parts"):
        if not _plain_only(state[key]):
            raise InvalidArgumentError(f"{bad} its {key!r} holds more than numbers and arrays")
    if not all(isinstance(v, dict) for v in state["parts"].values()):
        raise InvalidArgumentError(f"{bad} its 'parts' are not dicts")
    names = [n for d in (state["attributes"], *state["parts"].values()) for n in d]
    if any(n.startswith("__") for n in names):
        raise InvalidArgumentError(f"{bad} it names a special attribute")
    rng = state["numpy_random_state"]
    if (
        len(rng) != 5
        or rng[0] != "MT19937"
        or not isinstance(rng[1], torch.Tensor)
        or rng[1].shape != (624,)
        or not all(type(v) in (int, float) for v in rng[2:])
    ):
        raise InvalidArgumentError(f"{bad} its 'numpy_random_state' is not MT19937's")


def es_from_state(state: dict, path: str):
    """The ``cma.CMAEvolutionStrategy`` of :func:`es_state`; numpy's generator set back too.

    Raises:
        InvalidArgumentError: ``state`` is not such a state (``path`` names the file), or
            pycma cannot make an ES of its arguments.
    """
    import cma
    from cma.utilities.utils import ElapsedWCTime

    _check(state, path)
    try:
        # pycma seeds numpy's global generator here; the saved state replaces it below.
        es = cma.CMAEvolutionStrategy(
            state["x0"].numpy(), float(state["sigma0"]), dict(state["options"])
        )
    except Exception as exc:  # noqa: BLE001 - whatever pycma says about its arguments
        raise InvalidArgumentError(
            f"{path!r} holds a CMA-ES state pycma cannot rebuild: {exc}"
        ) from exc
    parts = _parts(es)
    unknown = sorted(set(state["parts"]) - set(parts))
    if unknown:
        raise InvalidArgumentError(
            f"{path!r} holds a CMA-ES state of another pycma (parts {unknown} are not this "
            f"one's, {cma.__version__})"
        )
    for target, values in [(es, state["attributes"])] + [
        (parts[name], values) for name, values in state["parts"].items()
    ]:
        for name, value in values.items():
            setattr(target, name, _back(value, getattr(target, name, None)))
    # ask() makes the timer on the first generation only.
    es.timer = ElapsedWCTime()
    name, keys, pos, has_gauss, cached = state["numpy_random_state"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    return es
