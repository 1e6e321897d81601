#!/usr/bin/env bash
# Seed corpora of the CRL and OCSP fuzz targets from a fresh test PKI (real messages made
# by the openssl CLI): test/fuzz/seeds.sh OUT_DIR  ->  OUT_DIR/crl/ and OUT_DIR/ocsp/
set -euo pipefail
out=$1
src=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
bash "$src/scripts/test-pki.sh" "$work/pki" >/dev/null
pki=$work/pki
mkdir -p "$out/crl" "$out/ocsp"
for f in "$pki"/vendor/*crl*.der "$pki"/vendor/*crl*.pem; do
    [[ -e $f ]] && cp "$f" "$out/crl/"
done
# a request for dev1 with a nonce, and a signed answer from the ICA
openssl ocsp -issuer "$pki/vendor/ica.pem" -cert "$pki/vendor/dev1.pem" -reqout "$out/ocsp/req.der" \
    >/dev/null 2>&1
openssl ocsp -issuer "$pki/vendor/ica.pem" -cert "$pki/vendor/dev1.pem" -no_nonce \
    -reqout "$out/ocsp/req-nononce.der" >/dev/null 2>&1
serial=$(openssl x509 -in "$pki/vendor/dev1.pem" -noout -serial | cut -d= -f2)
printf 'V\t351231235959Z\t\t%s\tunknown\t/CN=Device 1\n' "$serial" > "$work/index.txt"
openssl ocsp -index "$work/index.txt" -rsigner "$pki/vendor/ica.pem" -rkey "$pki/vendor/ica.key" \
    -CA "$pki/vendor/ica.pem" -reqin "$out/ocsp/req.der" -respout "$out/ocsp/resp.der" \
    -rother "$pki/vendor/root.pem" -ndays 1 >/dev/null 2>&1
base64 -w0 "$out/ocsp/req.der" > "$out/ocsp/req.b64"
echo "seeds: $(ls "$out/crl" | wc -l) CRLs, $(ls "$out/ocsp" | wc -l) OCSP messages in $out"
