"""A tiny training run that SIGKILLs itself at a chosen point (run by tests/test_trainer.py):
    python tests/kill_worker.py WORKDIR CHECKPOINT MANIFEST IMAGES KILL_AT

KILL_AT: "save:N"  right after the checkpoint of step N is dispatched (its asynchronous write in flight);
         "never"   run to the end.
SIGKILL cannot be caught: no handler, no finally block and no orbax finalisation runs, as when a machine dies.
"""

import os
import signal
import sys

import jax

workdir, ckpt, manifest, images, kill_at = sys.argv[1:6]
jax.config.update("jax_num_cpu_devices", 8)      # as in the test process (tests/conftest.py)

from configs import train_tiny  # noqa: E402  (after the backend is configured)
from vlmcls_jax import checkpoint  # noqa: E402
from vlmcls_jax.train import trainer  # noqa: E402

save = checkpoint.TrainCheckpoints.save


def save_then_die(self, step, *args, **kwargs):
    out = save(self, step, *args, **kwargs)
    if f"save:{step}" == kill_at:
        print(f"SIGKILL as the checkpoint of step {step} is being written", flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    return out


checkpoint.TrainCheckpoints.save = save_then_die

config = train_tiny.get_config()
config.model.checkpoint, config.data.classification_manifest, config.data.image_root = ckpt, manifest, images
config.checkpoint_every, config.keep_checkpoints = 2, 10
trainer.run(config, workdir)
print("finished", flush=True)
