#!/usr/bin/env bash
# The demo PKI for `make demo`: scripts/demo-pki.sh DIR. The demo uses the same layout as the
# tests (documented in scripts/test-pki.sh), so it simply builds that; idempotent.
set -euo pipefail
if [[ $# -ne 1 ]]; then
    echo "usage: $0 DIR" >&2
    exit 2
fi
exec bash "$(dirname "$0")/test-pki.sh" "$1"
