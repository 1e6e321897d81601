#!/usr/bin/env bash
# Real CMP messages for the decoder tests, made by `openssl cmp` (client and mock server on
# 127.0.0.1) with a throwaway PKI: make-samples.sh DIR. Writes DIR/<body>.der files, the
# certificates in DIR/pki/ and DIR/.done last. Independent of scripts/test-pki.sh so the
# decoder can be tested before (and without) the shared corpus.
set -euo pipefail
dir=$1
mkdir -p "$dir/pki"
cd "$dir/pki"

ec() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }
ec ca.key; ec srv.key; ec dev.key; ec new.key
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out rsa.key 2>/dev/null

cat > ext.cnf <<'EOF'
[ca]
basicConstraints=critical,CA:TRUE,pathlen:1
keyUsage=critical,keyCertSign,cRLSign
subjectKeyIdentifier=hash
[srv]
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=1.3.6.1.5.5.7.3.28,clientAuth
subjectKeyIdentifier=hash
authorityKeyIdentifier=keyid
[dev]
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyAgreement
subjectKeyIdentifier=hash
authorityKeyIdentifier=keyid
EOF
openssl req -x509 -new -key ca.key -subj "/C=DE/O=Test/CN=Test CA" -days 30 \
    -addext "basicConstraints=critical,CA:TRUE,pathlen:1" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" -out ca.pem 2>/dev/null
sign() { # key subject ext out
    openssl req -new -key "$1" -subj "$2" 2>/dev/null |
        openssl x509 -req -CA ca.pem -CAkey ca.key -days 30 -extfile ext.cnf -extensions "$3" \
            -out "$4" 2>/dev/null
}
sign srv.key "/CN=Mock CA" srv srv.pem
sign dev.key "/C=DE/O=Vendor/CN=Device 1/serialNumber=SN0001" dev dev.pem
sign new.key "/CN=Issued" dev issued.pem
sign rsa.key "/C=DE/O=Vendor/CN=Device 3/serialNumber=SN0003" dev rsa.pem
openssl req -new -key new.key -subj "/CN=Issued" -out p10.csr 2>/dev/null

free_port() {
    /usr/bin/python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'
}
wait_port() {
    for _ in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.05
    done
    return 1
}
# exchange NAME SERVER_ARGS -- CLIENT_ARGS: one mock server for one client run.
exchange() {
    local name=$1 port srv=() cli=()
    shift
    while [ "$1" != "--" ]; do srv+=("$1"); shift; done
    shift
    cli=("$@")
    port=$(free_port)
    openssl cmp -port "$port" -max_msgs 4 -srv_trusted ca.pem -rsp_cert issued.pem \
        -rsp_capubs ca.pem "${srv[@]}" > "srv-$name.log" 2>&1 &
    local pid=$!
    wait_port "$port" || true
    timeout 30 openssl cmp -server "127.0.0.1:$port" -path pkix/ -trusted ca.pem \
        -unprotected_errors "${cli[@]}" > "cli-$name.log" 2>&1 || true
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}
SIG=(-srv_cert srv.pem -srv_key srv.key)
DEV=(-cert dev.pem -key dev.key -extracerts ca.pem)
O=..
exchange ir "${SIG[@]}" -- -cmd ir "${DEV[@]}" -newkey new.key -certout out.pem -subject "/CN=Issued" \
    -reqout $O/ir.der,$O/certConf.der -rspout $O/ip.der,$O/pkiconf.der
exchange cr "${SIG[@]}" -- -cmd cr "${DEV[@]}" -newkey new.key -certout out.pem -subject "/CN=Issued" \
    -implicit_confirm -reqout $O/cr.der -rspout $O/cp.der
exchange p10cr "${SIG[@]}" -- -cmd p10cr "${DEV[@]}" -csr p10.csr -disable_confirm \
    -reqout $O/p10cr.der -rspout $O/cp-p10.der
exchange kur "${SIG[@]}" -- -cmd kur -cert issued.pem -key new.key -newkey new.key -certout out.pem \
    -disable_confirm -reqout $O/kur.der -rspout $O/kup.der
exchange rr "${SIG[@]}" -- -cmd rr "${DEV[@]}" -oldcert issued.pem -revreason 1 \
    -reqout $O/rr.der -rspout $O/rp.der
exchange genm "${SIG[@]}" -- -cmd genm "${DEV[@]}" -infotype signKeyPairTypes \
    -reqout $O/genm.der -rspout $O/genp.der
exchange error "${SIG[@]}" -send_error -- -cmd ir "${DEV[@]}" -newkey new.key -certout out.pem \
    -subject "/CN=Issued" -reqout $O/ir-2.der -rspout $O/error.der
exchange poll "${SIG[@]}" -poll_count 2 -check_after 0 -- -cmd cr "${DEV[@]}" \
    -newkey new.key -certout out.pem -subject "/CN=Issued" -disable_confirm \
    -reqout $O/cr-2.der,$O/pollReq.der,$O/pollReq-2.der -rspout $O/cp-waiting.der,$O/pollRep.der,$O/cp-2.der
exchange rsa "${SIG[@]}" -- -cmd ir -cert rsa.pem -key rsa.key -extracerts ca.pem \
    -newkey new.key -certout out.pem -subject "/CN=Issued" -disable_confirm -reqout $O/ir-rsa.der
exchange mac -srv_secret pass:pbm-secret-1 -srv_ref mock-ca -- -cmd ir -secret pass:pbm-secret-1 -ref kid-1 \
    -newkey new.key -certout out.pem -subject "/CN=Issued" -disable_confirm -reqout $O/ir-mac.der \
    -rspout $O/ip-mac.der
touch ../.done
