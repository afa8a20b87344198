"""Worker log records reach the parent's handlers through one multiprocessing-logging receiver."""

from __future__ import annotations

import logging
import threading

import multiprocessing_logging

_lock = threading.Lock()
_receiver: multiprocessing_logging.MultiProcessingHandler | None = None


class _ToParentLoggers(logging.Handler):
    """Re-dispatches a worker's record to the parent logger of the same name."""

    def emit(self, record: logging.LogRecord) -> None:
        logger = logging.getLogger(record.name)
        if logger.isEnabledFor(record.levelno):
            logger.handle(record)


def worker_log_queue():
    """The queue workers put their records on; starts the parent's receiver thread once."""
    global _receiver
    with _lock:
        if _receiver is None:
            _receiver = multiprocessing_logging.MultiProcessingHandler(
                "fastretro-worker-logs", sub_handler=_ToParentLoggers()
            )
        return _receiver.queue
