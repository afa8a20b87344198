"""What every stage writes into the run folder: settings, summaries and per-epoch scalars."""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
import os

from fastretro.agents.world_models.config import WorldModelsConfig

# One logger for the whole pipeline, named as before the stages had modules of their own.
log = logging.getLogger("fastretro.agents.world_models")


def save_config(cfg: WorldModelsConfig, run_dir: str) -> None:
    """``cfg`` as the run folder's ``config.json``, the settings of the last stage run."""
    write_json(os.path.join(run_dir, "config.json"), dataclasses.asdict(cfg))


def write_json(path: str, obj) -> None:
    """``obj`` as JSON, written atomically (tmp + rename)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=1)
        f.write("\n")
    os.replace(tmp, path)


class Scalars:
    """One CSV row per epoch or generation, and the same figures as TensorBoard scalars."""

    def __init__(self, run_dir: str, name: str, resume: bool) -> None:
        path = os.path.join(run_dir, name)
        self._fresh = not (resume and os.path.exists(path))
        self._file = open(path, "w" if self._fresh else "a", newline="")
        self._csv = None
        self.tb = None
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(os.path.join(run_dir, "tb", name.split(".")[0]))
        except ImportError:
            log.warning("tensorboard is not installed: %s only, no TensorBoard scalars", name)

    def row(self, row: dict, step: int) -> None:
        """Append ``row`` to the CSV; its ``group/name`` figures become scalars at ``step``."""
        if self._csv is None:
            self._csv = csv.DictWriter(self._file, fieldnames=list(row))
            if self._fresh:
                self._csv.writeheader()
        self._csv.writerow(row)
        self._file.flush()
        if self.tb is not None:
            for k, v in row.items():
                if "/" in k:
                    self.tb.add_scalar(k, v, step)

    def close(self) -> None:
        """Close the CSV and the TensorBoard writer."""
        self._file.close()
        if self.tb is not None:
            self.tb.close()
