#!/usr/bin/env bash
# Runs one job locally in the repository's virtual environment (created by `make demo` / `make test`).
#   launch/local.sh CONFIG WORKDIR [--config.FIELD=VALUE ...]
set -euo pipefail
if [ $# -lt 2 ]; then
  echo "usage: $0 CONFIG WORKDIR [--config.FIELD=VALUE ...]" >&2
  exit 2
fi
cd "$(dirname "$0")/.."
config=$1 workdir=$2
shift 2
[ -x .venv/bin/python ] || make .venv/.installed
exec .venv/bin/python -m vlmcls_jax.main --config "$config" --workdir "$workdir" "$@"
