"""Checkpoint-and-stop on SIGTERM or SIGINT (Ctrl-C), agreed across hosts."""

from __future__ import annotations

import os
import signal
import threading

import jax
from jax.experimental import multihost_utils

SIGNALS = {signal.SIGTERM: "SIGTERM", signal.SIGINT: "SIGINT (Ctrl-C)"}


class Preemption:
    """Whether to checkpoint and stop after a step because the job was asked to terminate: SIGTERM (what
    Kubernetes, SLURM and preemptible TPU VMs send before killing a job) or SIGINT (Ctrl-C).

    One process: a handler for both signals sets a flag (the previous handlers are restored by `close`).
    Several processes: jax.distributed's preemption sync manager, which agrees across hosts on the step at
    which all of them stop (each host may get the signal at a different moment).  It listens for SIGTERM
    only, so our SIGINT handler sends this process a SIGTERM.  A second Ctrl-C while the run is stopping
    interrupts it as usual (KeyboardInterrupt)."""

    def __init__(self):
        self._flag, self._previous, self.signal_name = threading.Event(), {}, None
        if threading.current_thread() is not threading.main_thread():
            return
        signals = (signal.SIGTERM, signal.SIGINT) if jax.process_count() == 1 else (signal.SIGINT,)
        for signum in signals:
            self._previous[signum] = signal.signal(signum, self._handle)

    def _handle(self, signum, frame) -> None:
        if signum == signal.SIGINT and self._flag.is_set():
            raise KeyboardInterrupt   # asked twice: stop now
        self._flag.set()
        self.signal_name = SIGNALS[signum]
        print(f"\n{self.signal_name} received: the run stops after this step and writes a checkpoint "
              "(Ctrl-C again to stop at once, without one)", flush=True)
        if jax.process_count() > 1 and signum == signal.SIGINT:
            os.kill(os.getpid(), signal.SIGTERM)   # to jax.distributed's preemption notifier

    def requested(self, step: int) -> bool:
        if jax.process_count() > 1:
            return multihost_utils.reached_preemption_sync_point(step)
        return self._flag.is_set()

    def close(self) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        self._previous = {}
