#!/usr/bin/env bash
# make demo: one real enrollment through raproxy, on loopback, in well under a minute.
#   demo PKI (vendor root + device with serialNumber, operator root + issuing CA + RA)
#   → mock CA (`openssl cmp -port`) that trusts ONLY the operator root, i.e. only the RA
#   → raproxy (TLS, manufacturer and operator domains)
#   → a device (`openssl cmp -cmd ir` with its vendor certificate) enrolls through raproxy.
# Everything it starts is stopped on exit; logs stay in the demo directory.
set -euo pipefail
BUILD=${1:-build}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN="$ROOT/$BUILD/raproxy"
DIR=${RAPROXY_DEMO_DIR:-$ROOT/$BUILD/demo}
[ -x "$BIN" ] || { echo "demo: $BIN not built (run make)"; exit 1; }

free_port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$1) 2>/dev/null && return 0; sleep 0.1; done; return 1; }

rm -rf "$DIR"; mkdir -p "$DIR"
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

echo "== demo PKI in $DIR/pki"
bash "$ROOT/scripts/demo-pki.sh" "$DIR/pki" >"$DIR/pki.log" 2>&1
PKI="$DIR/pki"
CA_PORT=$(free_port); RP_PORT=$(free_port); ADMIN_PORT=$(free_port)

echo "== mock CA on 127.0.0.1:$CA_PORT (trusts only the operator root, i.e. the RA)"
openssl cmp -port "$CA_PORT" -srv_cert "$PKI/ca/srv.pem" -srv_key "$PKI/ca/srv.key" \
  -srv_trusted "$PKI/operator/root.pem" -srv_untrusted "$PKI/ca/chain.pem" \
  -rsp_cert "$PKI/ca/issued.pem" -rsp_capubs "$PKI/ca/chain.pem" >"$DIR/mockca.log" 2>&1 &
PIDS+=($!)
wait_port "$CA_PORT"

cat >"$DIR/raproxy.yaml" <<YAML
listeners:
  - address: 127.0.0.1:$RP_PORT
    tls: {cert: $PKI/tls/server.pem, key: $PKI/tls/server.key}
admin: {address: 127.0.0.1:$ADMIN_PORT}
upstream:
  url: http://127.0.0.1:$CA_PORT/pkix/
  max_connections: 1   # openssl's mock CA serves one connection at a time
  keep_alive: false
ra: {cert: $PKI/operator/ra.pem, key: $PKI/operator/ra.key, chain: $PKI/operator/ra.chain.pem}
domains:
  - name: manufacturer
    trust_anchors: [$PKI/vendor/root.pem]
    crls: [$PKI/vendor/crl.pem]
    allow: [ir, cr, p10cr, certConf, genm, pollReq, error]
    allowlist: $PKI/vendor/allowlist.txt
  - name: operator
    trust_anchors: [$PKI/operator/root.pem]
    intermediates: [$PKI/operator/ica.pem]
    allow: [kur, rr, certConf, genm, pollReq, error]
YAML
echo "== raproxy on 127.0.0.1:$RP_PORT (TLS), admin on 127.0.0.1:$ADMIN_PORT"
"$BIN" --config "$DIR/raproxy.yaml" --check-config
"$BIN" --config "$DIR/raproxy.yaml" >"$DIR/raproxy.log" 2>&1 &
RP_PID=$!
PIDS+=($RP_PID)
wait_port "$RP_PORT"

echo "== device SN0001 enrolls with its vendor certificate (ir, then certConf)"
openssl cmp -cmd ir -server "127.0.0.1:$RP_PORT" -path .well-known/cmp/p/manufacturer \
  -tls_used -tls_trusted "$PKI/tls/ca.pem" -tls_host localhost \
  -cert "$PKI/vendor/dev1.pem" -key "$PKI/vendor/dev1.key" -extracerts "$PKI/vendor/ica.pem" \
  -trusted "$PKI/operator/root.pem" -untrusted "$PKI/ca/chain.pem" \
  -newkey "$PKI/ca/issued.key" -subject "/O=Operator/CN=Device 1/serialNumber=SN0001" \
  -certout "$DIR/device-operator-cert.pem" >"$DIR/device.log" 2>&1 \
  || { echo "demo: enrollment FAILED"; tail -5 "$DIR/device.log"; tail -5 "$DIR/raproxy.log"; exit 1; }

echo
echo "Issued certificate ($DIR/device-operator-cert.pem):"
openssl x509 -in "$DIR/device-operator-cert.pem" -noout -subject -issuer | sed 's/^/  /'
echo
echo "Device not on the allowlist (SN0999) is refused by raproxy, never reaching the CA:"
openssl cmp -cmd ir -server "127.0.0.1:$RP_PORT" -path .well-known/cmp/p/manufacturer \
  -tls_used -tls_trusted "$PKI/tls/ca.pem" -tls_host localhost \
  -cert "$PKI/vendor/notlisted.pem" -key "$PKI/vendor/notlisted.key" -extracerts "$PKI/vendor/ica.pem" \
  -trusted "$PKI/operator/root.pem" -untrusted "$PKI/ca/chain.pem" \
  -newkey "$PKI/ca/issued.key" -subject "/CN=x" -certout "$DIR/refused.pem" 2>&1 \
  | grep -o 'PKIFailureInfo: [a-zA-Z]*; StatusString: "[^"]*"' | sed 's/^/  /' || true
echo
echo "raproxy log (one JSON line per exchange): $DIR/raproxy.log"
grep '"event":"exchange"' "$DIR/raproxy.log" | sed 's/^/  /' | cut -c1-220
echo "metrics: curl http://127.0.0.1:$ADMIN_PORT/metrics (while running); snapshot saved in $DIR/metrics.txt"
curl -s "http://127.0.0.1:$ADMIN_PORT/metrics" >"$DIR/metrics.txt" || true
grep -E '^raproxy_cmp_requests_total' "$DIR/metrics.txt" | sed 's/^/  /' || true
kill -TERM "$RP_PID"; wait "$RP_PID" || true
echo "== done: everything stopped"
