#!/usr/bin/env bash
# Set up the environment, then run the test suite on the CPU.
#
# Usage: bash tools/run_tests.sh [extra pytest options]
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
bash tools/setup_env.sh

"${VENV_DIR:-$root/.venv}/bin/python" -m pytest tests "$@"
