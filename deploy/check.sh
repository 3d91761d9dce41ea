#!/usr/bin/env bash
# Checks the Kubernetes manifests in deploy/kubernetes without a cluster or the network:
# schemas (Kubernetes' own, strict, from the PyPI package kubernetes-validate; KEDA's
# ScaledObject from deploy/kubernetes/schemas/) and Ordo's invariants (deploy/check_manifests.py
# says which). Exits non-zero naming each file and problem. Then checks the checker:
# deploy/check_manifests_test.py breaks a copy of the directory once per invariant and expects
# each break to be named (a few seconds).
#
#   deploy/check.sh            (make test runs it)
#
# Python: the local stack's virtualenv (devstack/requirements.txt pins kubernetes-validate;
# devstack/stack.sh installs it, as `make local-dev-stack` and `make test` do), or
# ORDO_DEPLOY_PYTHON.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
python=${ORDO_DEPLOY_PYTHON:-${ORDO_CACHE:-$HOME/.cache/ordo}/venv/bin/python}

if [ ! -x "$python" ]; then
  echo "deploy/check.sh: no Python at $python; run devstack/stack.sh install (make local-dev-stack does), or set ORDO_DEPLOY_PYTHON" >&2
  exit 2
fi
if ! "$python" -c 'import kubernetes_validate, jsonschema, yaml' 2>/dev/null; then
  echo "deploy/check.sh: $python lacks kubernetes-validate (pinned in devstack/requirements.txt); run devstack/stack.sh install (make local-dev-stack does)" >&2
  exit 2
fi
"$python" "$here/check_manifests.py" "$here/kubernetes"
if ! selftest=$("$python" "$here/check_manifests_test.py" 2>&1); then
  printf '%s\n' "$selftest" >&2
  echo "deploy/check.sh: deploy/check_manifests_test.py failed: a check no longer names what it guards (above)" >&2
  exit 1
fi
printf '%s\n' "$selftest" | tail -n 1
