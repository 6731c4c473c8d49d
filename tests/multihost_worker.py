"""One process of a two-process training run on localhost (run by tests/test_multihost.py):
    python tests/multihost_worker.py PORT PROCESS_ID WORKDIR CHECKPOINT MANIFEST IMAGES STOP

STOP: N (config.stop_at_step; 0: run to the end) or "sigterm:N": process 1 alone sends itself SIGTERM as soon
as it has logged step N (a preemption notice reaching one host), and the run goes on to its end or until the
hosts agree to stop."""

import os
import signal
import sys

import jax

port, process_id, workdir, ckpt, manifest, images, stop = sys.argv[1:8]
jax.config.update("jax_num_cpu_devices", 4)
jax.config.update("jax_cpu_collectives_implementation", "gloo")
jax.distributed.initialize(f"127.0.0.1:{port}", num_processes=2, process_id=int(process_id))

from configs import train_tiny  # noqa: E402  (after the backend is configured)
from vlmcls_jax.train import trainer  # noqa: E402

config = train_tiny.get_config()
config.model.checkpoint, config.data.classification_manifest, config.data.image_root = ckpt, manifest, images
config.mesh_shape = (2, 2, 2)
if stop.startswith("sigterm:"):
    write = trainer.MetricsLog.write

    def write_then_terminate(self, step, *args):
        write(self, step, *args)
        if step == int(stop.split(":")[1]) and jax.process_index() == 1:
            print(f"process 1: SIGTERM after step {step}", flush=True)
            os.kill(os.getpid(), signal.SIGTERM)
    trainer.MetricsLog.write = write_then_terminate
else:
    config.stop_at_step = int(stop)
assert jax.device_count() == 8 and jax.local_device_count() == 4
print("final", trainer.run(config, workdir), flush=True)
