"""A process pool for independent runs (bench protocols, evaluation suites): spawned workers, one core
each, that end when the parent does however it ends (killed by a signal, its workers would otherwise
run on as orphans)."""

from __future__ import annotations

import os
import sys
import time


def worker_pool(workers: int, grace_s: float = 30.0):
    """A process pool for a bench's runs (spawned, one core each) whose workers end when the bench does,
    however it ends: killed by a signal, its workers would otherwise train on as orphans. A worker gets
    SIGTERM when the bench goes (the pipeline then stops its run cleanly, closing its envs) and leaves
    `grace_s` seconds later whatever it is doing: once its task returns it would otherwise wait forever
    for the next one (it holds its own end of the pool's queue)."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor
    return ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn"),
                               initializer=_end_with, initargs=(os.getpid(), grace_s))


def _end_with(parent: int, grace_s: float) -> None:
    """Worker initializer: ask Linux for SIGTERM when the parent goes (PR_SET_PDEATHSIG), leave now if it
    is already gone, and leave `grace_s` after it goes (a watcher thread)."""
    import threading
    if sys.platform.startswith("linux"):
        import ctypes
        import signal
        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM))       # 1 = PR_SET_PDEATHSIG
    if os.getppid() != parent:
        os._exit(1)
    threading.Thread(target=_leave_after, args=(parent, grace_s), daemon=True, name="end-with-bench").start()


def _leave_after(parent: int, grace_s: float) -> None:
    while os.getppid() == parent:
        time.sleep(0.5)
    time.sleep(grace_s)
    os._exit(1)
