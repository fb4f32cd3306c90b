#!/usr/bin/env bash
# tests/e2e/sandbox-jail.sh - the agent sandbox suite with `runtime: jail` (the explicit
# alternative to gVisor). Skips, naming why, where that runtime is not available.
SBX_RUNTIME=jail exec bash "$(dirname "$0")/sandbox-api.sh"
