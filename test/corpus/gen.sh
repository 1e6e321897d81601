#!/usr/bin/env bash
# Regenerates the CMP corpus: test/corpus/gen.sh [OUTDIR] (default: this directory).
#
# Every file is a real DER PKIMessage captured with -reqout/-rspout from an `openssl cmp`
# client talking to an `openssl cmp -port` mock server on a free 127.0.0.1 port, with a
# throwaway PKI from scripts/test-pki.sh (see README.md here for what each file is). File
# names start with the body type, up to the first '-' or '.'. Fails if any message is
# missing or does not parse with `openssl asn1parse`.
# shellcheck disable=SC2046 # $(dev ...) is split on purpose, see dev() below
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
out=$(mkdir -p "${1:-$here}" && cd "${1:-$here}" && pwd)
# The exchanges below run one after another; this bounds a hung client or server.
readonly CLIENT_TIMEOUT=30

tmp=$(mktemp -d)
srv_pid=
# shellcheck disable=SC2317 # called by the trap
cleanup() {
    if [[ -n $srv_pid ]]; then
        kill "$srv_pid" 2>/dev/null || true
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT
bash "$root/scripts/test-pki.sh" "$tmp/pki"
cd "$tmp"
P=$tmp/pki
cat "$P/vendor/root.pem" "$P/operator/root.pem" > anchors.pem
openssl req -new -key "$P/ca/issued.key" -subj "/O=Operator/CN=Device 1/serialNumber=SN0001" \
    -out p10.csr

free_port() {
    /usr/bin/python3 -c \
        'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
wait_port() {
    local _
    for _ in $(seq 200); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.05
    done
    echo "gen.sh: mock server on port $1 did not start" >&2
    return 1
}

# exchange NAME [server args] -- [client args]: one mock CA for one client transaction.
# The mock CA signs with ca/srv (chain: operator ica), trusts the vendor and operator roots,
# always issues ca/issued.pem and returns the operator root as caPubs.
exchange() {
    local name=$1 port srv=() cli=()
    shift
    while [[ $1 != -- ]]; do
        srv+=("$1")
        shift
    done
    shift
    cli=("$@")
    port=$(free_port)
    openssl cmp -port "$port" -srv_trusted anchors.pem -srv_untrusted "$P/operator/ica.pem" \
        -rsp_cert "$P/ca/issued.pem" -rsp_capubs "$P/operator/root.pem" "${srv[@]}" \
        >"srv-$name.log" 2>&1 &
    srv_pid=$!
    wait_port "$port"
    if ! timeout $CLIENT_TIMEOUT openssl cmp -server "127.0.0.1:$port" -path pkix/ \
        -trusted "$P/operator/root.pem" -untrusted "$P/operator/ica.pem" "${cli[@]}" \
        >"cli-$name.log" 2>&1; then
        if [[ $name != error ]]; then
            echo "gen.sh: exchange $name failed:" >&2
            cat "cli-$name.log" "srv-$name.log" >&2
            return 1
        fi
    fi
    kill "$srv_pid" 2>/dev/null || true
    wait "$srv_pid" 2>/dev/null || true
    srv_pid=
}

# post NAME FILE BODY: POST FILE to a fresh mock CA; its answer must have body type BODY.
post() {
    local port
    port=$(free_port)
    openssl cmp -port "$port" -srv_trusted anchors.pem -srv_untrusted "$P/operator/ica.pem" \
        -rsp_cert "$P/ca/issued.pem" "${SIG[@]}" >"srv-$1.log" 2>&1 &
    srv_pid=$!
    wait_port "$port"
    curl -sS --max-time $CLIENT_TIMEOUT --data-binary @"$2" \
        -H 'Content-Type: application/pkixcmp' -o "rsp-$1.der" "http://127.0.0.1:$port/pkix/"
    kill "$srv_pid" 2>/dev/null || true
    wait "$srv_pid" 2>/dev/null || true
    srv_pid=
    local got
    got=$(/usr/bin/python3 -c 'import sys
from pyasn1.codec.der import decoder
from pyasn1_modules import rfc4210
m, _ = decoder.decode(open(sys.argv[1], "rb").read(), asn1Spec=rfc4210.PKIMessage())
print(m["body"].getName())' "rsp-$1.der")
    if [[ $got != "$3" ]]; then
        echo "gen.sh: mock CA answered $got to $2, not $3" >&2
        cat "srv-$1.log" >&2
        return 1
    fi
}

SIG=(-srv_cert "$P/ca/srv.pem" -srv_key "$P/ca/srv.key")
NEW=(-newkey "$P/ca/issued.key" -subject "/O=Operator/CN=Device 1/serialNumber=SN0001"
    -certout issued-out.pem)
# dev ID: a vendor device's credentials, unquoted on use (mktemp paths have no blanks); its chain (device + vendor ica) goes in extraCerts.
dev() { echo "-cert $P/vendor/$1.pem -key $P/vendor/$1.key -untrusted $P/vendor/ica.pem"; }
O=$out

exchange ir "${SIG[@]}" -- -cmd ir $(dev dev1) "${NEW[@]}" \
    -reqout "$O/ir.der,$O/certConf.der" -rspout "$O/ip.der,$O/pkiconf.der"
exchange cr "${SIG[@]}" -- -cmd cr $(dev dev2) "${NEW[@]}" -disable_confirm \
    -reqout "$O/cr.der" -rspout "$O/cp.der"
exchange p10cr "${SIG[@]}" -- -cmd p10cr $(dev dev1) -csr p10.csr -certout issued-out.pem \
    -disable_confirm -reqout "$O/p10cr.der" -rspout "$O/cp-p10cr.der"
exchange kur "${SIG[@]}" -- -cmd kur -cert "$P/ca/issued.pem" -key "$P/ca/issued.key" \
    -oldcert "$P/ca/issued.pem" "${NEW[@]}" -disable_confirm -reqout "$O/kur.der" -rspout "$O/kup.der"
exchange rr "${SIG[@]}" -- -cmd rr -cert "$P/ca/issued.pem" -key "$P/ca/issued.key" \
    -oldcert "$P/ca/issued.pem" -revreason 1 -reqout "$O/rr.der" -rspout "$O/rp.der"
exchange genm "${SIG[@]}" -- -cmd genm $(dev dev1) -infotype signKeyPairTypes \
    -reqout "$O/genm.der" -rspout "$O/genp.der"
exchange error "${SIG[@]}" -send_error -- -cmd ir $(dev dev1) "${NEW[@]}" -unprotected_errors \
    -reqout ir-error.der -rspout "$O/error.der"
# Two polls: cr -> cp(waiting), pollReq -> pollRep, pollReq -> cp.
exchange poll "${SIG[@]}" -poll_count 2 -check_after 0 -- -cmd cr $(dev dev1) "${NEW[@]}" \
    -disable_confirm -reqout cr-poll.der,"$O/pollReq.der",pollReq-2.der \
    -rspout cp-waiting.der,"$O/pollRep.der",cp-poll.der
exchange rsa "${SIG[@]}" -- -cmd ir $(dev dev-rsa) "${NEW[@]}" -disable_confirm \
    -reqout "$O/ir-rsa.der" -rspout ip-rsa.der
# openssl cmp 3.0 cannot sign with Ed25519: take an EC-signed ir and swap the signer (see
# resign.py), then check that the mock CA accepts the result (answers ip).
exchange ed25519 "${SIG[@]}" -- -cmd ir $(dev dev1) "${NEW[@]}" -disable_confirm \
    -reqout ir-ec.der -rspout ip-ec.der
/usr/bin/python3 "$here/resign.py" ir-ec.der "$O/ir-ed25519.der" "$P/vendor/dev-ed25519.key" \
    "$P/vendor/dev-ed25519.pem" "$P/vendor/ica.pem"
post ed25519 "$O/ir-ed25519.der" ip
exchange implicit "${SIG[@]}" -grant_implicitconf -- -cmd ir $(dev dev1) "${NEW[@]}" \
    -implicit_confirm -reqout "$O/ir-implicit.der" -rspout "$O/ip-implicit.der"
exchange mac -srv_secret pass:pbm-secret-1 -srv_ref mock-ca -- -cmd ir \
    -secret pass:pbm-secret-1 -ref kid-1 "${NEW[@]}" -disable_confirm \
    -reqout "$O/ir-mac.der" -rspout "$O/ip-mac.der"

status=0
for f in ir ip cr cp cp-p10cr p10cr kur kup rr rp genm genp certConf pkiconf pollReq pollRep \
    error ir-rsa ir-ed25519 ir-implicit ip-implicit ir-mac ip-mac; do
    if ! openssl asn1parse -inform DER -in "$O/$f.der" >/dev/null 2>&1; then
        echo "gen.sh: $f.der missing or not DER" >&2
        status=1
    fi
done
exit $status
