#!/usr/bin/env bash
# Runs a command with the test environment up (scripts/test-env.sh), exporting its variables,
# and brings the environment down afterwards, whatever the outcome, unless it was already up
# before (a developer's), which it leaves as it was.
set -euo pipefail
cd "$(dirname "$0")/.."
was_up=0
if scripts/test-env.sh status >/dev/null 2>&1; then was_up=1; fi
teardown() { if [ "$was_up" = 0 ]; then scripts/test-env.sh down; fi; }
trap teardown EXIT
env_text=$(scripts/test-env.sh up)
eval "$env_text"
"$@"
