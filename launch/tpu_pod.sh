#!/usr/bin/env bash
# Runs one job on every worker of a Cloud TPU pod slice (each worker is one JAX process).
#   launch/tpu_pod.sh TPU_NAME ZONE CONFIG WORKDIR [--config.FIELD=VALUE ...]
# WORKDIR must be shared by all workers (a gs:// bucket or a shared filesystem): checkpoints live there.
# The repository must already be cloned to ~/vlmcls-jax on every worker (see launch/README.md).
set -euo pipefail
if [ $# -lt 4 ]; then
  echo "usage: $0 TPU_NAME ZONE CONFIG WORKDIR [--config.FIELD=VALUE ...]" >&2
  exit 2
fi
name=$1 zone=$2 config=$3 workdir=$4
shift 4
gcloud compute tpus tpu-vm ssh "$name" --zone "$zone" --worker=all --command="
  cd ~/vlmcls-jax && \
  ([ -x .venv/bin/python ] || (python3 -m venv .venv && .venv/bin/pip install -q -e '.[tpu]')) && \
  .venv/bin/python -m vlmcls_jax.main --multihost --config $config --workdir $workdir $*"
