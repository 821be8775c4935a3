#!/usr/bin/env bash
# The Kubernetes node conformance suite ([NodeConformance], without [Serial],
# [Slow], [Flaky] and [Feature:…]) against crib; results in e2e/kube/CONFORMANCE.md.
#
#   sudo e2e/kube/conformance.sh [--procs 4] [--focus REGEX] [--dir DIR] [--keep]
set -euo pipefail
cd "$(dirname "$0")/../.."
exec .venv/bin/python -m e2e.kube.conformance "$@"
