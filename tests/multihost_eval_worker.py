"""One process of a two-process evaluation on localhost (run by tests/test_multihost.py):
    python tests/multihost_eval_worker.py PORT PROCESS_ID WORKDIR LLAVA CLIP MANIFEST CLASSES IMAGES
Prints `RESULT <json>` with the job's summary."""

import json
import sys

import jax

port, process_id, workdir, llava, clip, manifest, classes, images = sys.argv[1:9]
jax.config.update("jax_num_cpu_devices", 4)
jax.config.update("jax_cpu_collectives_implementation", "gloo")
jax.distributed.initialize(f"127.0.0.1:{port}", num_processes=2, process_id=int(process_id))

import train_fixtures  # noqa: E402  (after the backend is configured)
from vlmcls_jax.eval import job  # noqa: E402

config = train_fixtures.tiny_eval_config(llava, clip, manifest, classes, images)
assert jax.process_count() == 2 and jax.local_device_count() == 4
print("RESULT", json.dumps(job.run(config, workdir)), flush=True)
