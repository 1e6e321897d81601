#!/usr/bin/env bash
# The load-test fleet: bench/make-fleet.sh OUT_DIR [COUNT] [BUILD_DIR]
#
# OUT_DIR/pki/            the test PKI of scripts/test-pki.sh (vendor root + ICA, operator
#                         RA, mock CA, TLS server certificate)
# OUT_DIR/fleet-N.bin     N vendor devices "C=DE, O=Vendor, CN=Device i,
#                         serialNumber=BNiiiiiii", P-256 keys, signed by the vendor ICA
#                         (written by BUILD_DIR/bench/bench_mkfleet; format in bench/bench.h)
# OUT_DIR/serials-N.txt   their serial numbers, one per line (a domain allowlist)
# OUT_DIR/ca-trust.pem    vendor root + operator root: what bench_mockca --trust accepts, so
#                         it verifies requests forwarded unchanged and re-protected alike
# Idempotent: what exists is kept. COUNT defaults to 10000, BUILD_DIR to build-bench.
set -euo pipefail

if [[ $# -lt 1 || $# -gt 3 ]]; then
    echo "usage: $0 OUT_DIR [COUNT] [BUILD_DIR]" >&2
    exit 2
fi
src=$(cd "$(dirname "$0")/.." && pwd)
out=$1
count=${2:-10000}
build=${3:-$src/build-bench}
mkfleet=$build/bench/bench_mkfleet
[[ -x $mkfleet ]] || { echo "$0: $mkfleet not built" >&2; exit 1; }

mkdir -p "$out"
bash "$src/scripts/test-pki.sh" "$out/pki"
cat "$out/pki/vendor/root.pem" "$out/pki/operator/root.pem" > "$out/ca-trust.pem"
if [[ ! -s $out/fleet-$count.bin || ! -s $out/serials-$count.txt ]]; then
    "$mkfleet" --ca-cert "$out/pki/vendor/ica.pem" --ca-key "$out/pki/vendor/ica.key" \
        --count "$count" --out "$out/fleet-$count.bin.tmp" --allowlist "$out/serials-$count.txt.tmp"
    mv "$out/serials-$count.txt.tmp" "$out/serials-$count.txt"
    mv "$out/fleet-$count.bin.tmp" "$out/fleet-$count.bin"
fi
