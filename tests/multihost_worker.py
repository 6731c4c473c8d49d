"""One process of a two-process training run on localhost (run by tests/test_multihost.py):
    python tests/multihost_worker.py PORT PROCESS_ID WORKDIR CHECKPOINT MANIFEST IMAGES STOP_AT"""

import sys

import jax

port, process_id, workdir, ckpt, manifest, images, stop_at = sys.argv[1:8]
jax.config.update("jax_num_cpu_devices", 4)
jax.config.update("jax_cpu_collectives_implementation", "gloo")
jax.distributed.initialize(f"127.0.0.1:{port}", num_processes=2, process_id=int(process_id))

from configs import train_tiny  # noqa: E402  (after the backend is configured)
from vlmcls_jax.train import trainer  # noqa: E402

config = train_tiny.get_config()
config.model.checkpoint, config.data.classification_manifest, config.data.image_root = ckpt, manifest, images
config.mesh_shape = (2, 2, 2)
config.stop_at_step = int(stop_at)
assert jax.device_count() == 8 and jax.local_device_count() == 4
print("final", trainer.run(config, workdir), flush=True)
