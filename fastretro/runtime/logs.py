"""Worker log records reach the parent's own handlers, whatever the start method.

Workers put records on a queue (``logging.handlers.QueueHandler``); one listener thread per
start method in the parent hands each record to the parent logger of the same name, so the
parent's handlers (files, pytest's caplog, ...) see worker lines as their own.
multiprocessing-logging does the same for the fork start method only (it asserts that), and
pools here also run under forkserver and spawn.
"""

from __future__ import annotations

import atexit
import logging
import logging.handlers
import threading

_lock = threading.Lock()
_listeners: dict[str, tuple[object, logging.handlers.QueueListener]] = {}


class _ToParentLoggers(logging.Handler):
    """Re-dispatches a worker's record to the parent logger of the same name."""

    def handle(self, record: logging.LogRecord) -> bool:
        logger = logging.getLogger(record.name)
        if logger.isEnabledFor(record.levelno):
            logger.handle(record)
        return True

    def emit(self, record: logging.LogRecord) -> None:  # pragma: no cover - handle() overrides
        self.handle(record)


def worker_log_queue(ctx):
    """The queue that ``ctx``'s workers put their records on; starts its listener once."""
    method = ctx.get_start_method()
    with _lock:
        if method not in _listeners:
            queue = ctx.Queue(-1)
            listener = logging.handlers.QueueListener(queue, _ToParentLoggers())
            listener.start()
            _listeners[method] = (queue, listener)
        return _listeners[method][0]


def retire(method: str) -> None:
    """Forget ``method``'s queue: the next pool gets a new queue and listener.

    Called after a worker was killed: if it died while writing a record, it left the queue's
    cross-process write lock held, and no record put on that queue would arrive again. The
    old listener thread is a daemon and keeps delivering whatever still comes through.
    """
    with _lock:
        entry = _listeners.pop(method, None)
    if entry is not None:
        queue, _ = entry
        queue.cancel_join_thread()  # the parent's exit must not wait on a jammed queue either
        _retired.append(entry)  # keeps the listener's queue alive while its thread reads it


_retired: list = []


@atexit.register
def _stop_listeners() -> None:
    with _lock:
        for queue, listener in _listeners.values():
            # Not listener.stop(): it joins without a timeout, and a worker killed while writing
            # a record (a pool closed under Ctrl-C kills workers that do not exit in time) leaves
            # the queue's cross-process write lock held forever. The sentinel would then never
            # reach the listener and the interpreter would hang at exit; so the sentinel's
            # feeder thread is not joined either, and the (daemon) listener gets 1 s to drain.
            queue.cancel_join_thread()
            listener.enqueue_sentinel()
            thread = listener._thread
            if thread is not None:
                thread.join(timeout=1.0)
            listener._thread = None
        _listeners.clear()
