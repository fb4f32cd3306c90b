#!/usr/bin/env bash
# tests/hostile/sandbox-escape-jail.sh - the agent sandbox attacks with `runtime: jail` (the
# explicit alternative to gVisor), plus the kernel-surface cases that runtime exposes.
SBX_RUNTIME=jail exec bash "$(dirname "$0")/sandbox-escape.sh"
