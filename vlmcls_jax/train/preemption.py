"""Checkpoint-and-stop on SIGTERM, agreed across hosts."""

from __future__ import annotations

import signal
import threading

import jax
from jax.experimental import multihost_utils


class Preemption:
    """Whether to checkpoint and stop after a step because the job was asked to terminate (SIGTERM: what
    Kubernetes, SLURM and preemptible TPU VMs send before killing a job).

    One process: a SIGTERM handler sets a flag (the previous handler is restored by `close`).  Several
    processes: jax.distributed's preemption sync manager, which agrees across hosts on the step at which
    all of them stop (each host may get the signal at a different moment)."""

    def __init__(self):
        self._flag, self._previous = threading.Event(), None
        if jax.process_count() == 1 and threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, lambda signum, frame: self._flag.set())

    def requested(self, step: int) -> bool:
        if jax.process_count() > 1:
            return multihost_utils.reached_preemption_sync_point(step)
        return self._flag.is_set()

    def close(self) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)
            self._previous = None
