#!/usr/bin/env bash
# The test PKI: scripts/test-pki.sh DIR
#
# Builds every certificate and key the tests, the corpus generator and the demo use, with the
# openssl CLI only. Idempotent: exits 0 at once when DIR/.done exists; otherwise builds into a
# temporary sibling directory, writes .done last and renames it to DIR, so a half-built PKI is
# never seen. Keys are ECDSA P-256 unless said otherwise, all unencrypted PKCS#8 PEM
# ("BEGIN PRIVATE KEY"). Certificates are RFC 5280 v3: CA certificates carry basicConstraints
# critical CA:TRUE, keyUsage critical keyCertSign+cRLSign, SKI and AKI; end-entity certificates
# carry basicConstraints critical CA:FALSE, keyUsage critical digitalSignature, SKI and AKI.
#
# DIR/tls/        the TLS front end
#   ca.pem ca.key               TLS CA, "O=raproxy test, CN=TLS CA"
#   server.pem server.key       CN=localhost, SAN DNS:localhost, IP:127.0.0.1, EKU serverAuth
#   server2.pem server2.key     CN=localhost-2, same SANs (certificate reload tests)
#   client.pem client.key       CN=client, EKU clientAuth (mutual TLS tests)
# DIR/vendor/     the manufacturer domain (3GPP TS 33.310 vendor certificates)
#   root.pem root.key           vendor root, "C=DE, O=Vendor, CN=Vendor Root CA"
#   ica.pem ica.key             vendor intermediate under root, "C=DE, O=Vendor, CN=Vendor ICA"
#   devN.pem devN.key           devices signed by ica, "C=DE, O=Vendor, CN=Device N,
#                               serialNumber=SN000N": dev1 (SN0001), dev2 (SN0002)
#   dev-rsa.pem/.key            RSA-2048 device key, SN0003
#   dev-ed25519.pem/.key        Ed25519 device key, SN0004
#   expired.pem/.key            SN0900, valid 2020-01-01 .. 2021-01-01 only
#   revoked.pem/.key            SN0901, revoked in crl.pem
#   notlisted.pem/.key          SN0999, valid but absent from allowlist.txt
#   noserial.pem/.key           no serialNumber and no subjectKeyIdentifier
#   <name>.chain.pem            for every device above: the device certificate, then ica.pem
#   crl.pem crl.der             CRL issued by ica listing revoked.pem (nextUpdate in ~10 years)
#   crl-stale.pem               CRL issued by ica listing revoked.pem, nextUpdate 2021-01-01
#   crl-forged.pem              crl.pem's TBS re-signed with unknown/root's key (issuer name
#                               still "Vendor ICA"): not signed by the issuer it names
#   ica2.pem ica2.key           second intermediate under root, "CN=Vendor ICA 2", revoked by
#                               root-crl.pem
#   dev-subrevoked.pem/.key     SN0005, signed by ica2 (valid itself, its CA is revoked)
#   root-crl.pem                CRL issued by root listing ica2 (nextUpdate in ~10 years)
#   ica-nosign.pem/.key         "CN=Vendor ICA NoSign" under root: CA:TRUE but keyUsage
#                               cRLSign only (no keyCertSign): not a usable CA
#   dev-nosign.pem/.key         SN0006, signed by ica-nosign
#   ica-pathlen0.pem/.key       "CN=Vendor ICA PathLen0" under root: CA:TRUE, pathlen:0
#   ica-deep.pem/.key           "CN=Vendor ICA Deep" under ica-pathlen0 (beyond its pathlen)
#   dev-deep.pem/.key           SN0008, signed by ica-deep
#   ica-nc.pem/.key             "CN=Vendor ICA Constrained" under root: nameConstraints critical,
#                               permitted dirName "C=DE, O=Vendor, OU=Permitted"
#   dev-nc-ok.pem/.key          SN0009 "C=DE, O=Vendor, OU=Permitted, CN=Device 9", by ica-nc
#   dev-nc-bad.pem/.key         SN0010 "C=DE, O=Other, CN=Device 10", by ica-nc (outside)
#   deep-cas.pem                ica-deep.pem + ica-pathlen0.pem
#   allowlist.txt               SN0001..SN0006, SN0008..SN0010, SN0900, SN0901
# DIR/unknown/    a vendor nobody trusts
#   root.pem root.key           "C=DE, O=Unknown Vendor, CN=Unknown Root CA"
#   dev.pem dev.key             signed directly by unknown/root, serialNumber=SN0001 as well
# DIR/operator/   the operator PKI (the CA behind raproxy)
#   root.pem root.key           "O=Operator, CN=Operator Root CA"
#   ica.pem ica.key             issuing CA under root, "O=Operator, CN=Operator Issuing CA"
#   ra.pem ra.key               RA certificate "O=Operator, CN=raproxy RA", signed by ica,
#                               EKU cmcRA (1.3.6.1.5.5.7.3.28)
#   ra.chain.pem                the RA's intermediates: ica.pem
#   device.pem device.key       a device certificate under the operator CA, "O=Operator,
#                               CN=Device 7, serialNumber=SN0007" (must never pass as the CA)
# DIR/ca/         the mock CA (`openssl cmp -port`)
#   srv.pem srv.key             the mock CA's protection certificate "O=Operator, CN=Mock CA",
#                               signed by operator ica
#   issued.pem issued.key       what the mock CA always issues: "O=Operator, CN=Device 1,
#                               serialNumber=SN0001" signed by operator ica (clients must use
#                               -newkey issued.key)
#   chain.pem                   operator ica + operator root (caPubs / extraCerts)
# DIR/mac/
#   secrets.txt                 "<senderKID> <secret> [serial=…]" lines for MAC (PBM):
#                               kid-1 is device SN0001, kid-2 has no serial, kid-3 is
#                               SN0002 and may send only ir, certConf, pollReq
# DIR/.done                     written last
set -euo pipefail

if [[ $# -ne 1 ]]; then
    echo "usage: $0 DIR" >&2
    exit 2
fi
out=$1
[[ -e "$out/.done" ]] && exit 0

# Long enough that no test run meets an expiry; short of 2038 is not a concern for 64-bit time.
readonly DAYS=3650

parent=$(dirname "$out")
mkdir -p "$parent"
work=$(mktemp -d "$parent/.test-pki.XXXXXX")
trap 'rm -rf "$work"' EXIT
cd "$work"
mkdir -p tls vendor unknown operator ca mac

cat > ext.cnf <<'EOF'
[req]
distinguished_name = dn
[dn]
[v3_ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
[ee]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
[ee_noski]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
subjectKeyIdentifier = none
authorityKeyIdentifier = keyid:always
[tls_server]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost,IP:127.0.0.1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
[tls_client]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
[ra]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = 1.3.6.1.5.5.7.3.28
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
[v3_ca_nosign]
basicConstraints = critical,CA:TRUE
keyUsage = critical,cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
[v3_ca_pathlen0]
basicConstraints = critical,CA:TRUE,pathlen:0
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
[v3_ca_nc]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
nameConstraints = critical,permitted;dirName:nc_dir
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
[nc_dir]
C = DE
O = Vendor
OU = Permitted
[crl_ext]
authorityKeyIdentifier = keyid:always
EOF

# key FILE [ec|rsa|ed25519]
key() {
    case ${2:-ec} in
    ec) openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" ;;
    rsa) openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$1" ;;
    ed25519) openssl genpkey -algorithm ED25519 -out "$1" ;;
    esac 2>/dev/null
}

serial() { echo "0x$(openssl rand -hex 8)"; }

# root PREFIX SUBJECT: self-signed CA
root() {
    key "$1.key"
    openssl req -x509 -new -key "$1.key" -subj "$2" -days $DAYS -set_serial "$(serial)" \
        -config ext.cnf -extensions v3_ca -out "$1.pem"
}

# issue PREFIX SUBJECT ISSUER_PREFIX EXT [keytype]: key + certificate signed by ISSUER
issue() {
    key "$1.key" "${5:-ec}"
    openssl req -new -key "$1.key" -subj "$2" -config ext.cnf -out "$1.csr"
    openssl x509 -req -in "$1.csr" -CA "$3.pem" -CAkey "$3.key" -set_serial "$(serial)" \
        -days $DAYS -extfile ext.cnf -extensions "$4" -out "$1.pem" 2>/dev/null
    rm -f "$1.csr"
}

# --- TLS ---
root tls/ca "/O=raproxy test/CN=TLS CA"
issue tls/server "/O=raproxy test/CN=localhost" tls/ca tls_server
issue tls/server2 "/O=raproxy test/CN=localhost-2" tls/ca tls_server
issue tls/client "/O=raproxy test/CN=client" tls/ca tls_client

# --- vendor ---
root vendor/root "/C=DE/O=Vendor/CN=Vendor Root CA"
issue vendor/ica "/C=DE/O=Vendor/CN=Vendor ICA" vendor/root v3_ca
dev_subj() { echo "/C=DE/O=Vendor/CN=Device $1/serialNumber=$2"; }
issue vendor/dev1 "$(dev_subj 1 SN0001)" vendor/ica ee
issue vendor/dev2 "$(dev_subj 2 SN0002)" vendor/ica ee
issue vendor/dev-rsa "$(dev_subj 3 SN0003)" vendor/ica ee rsa
issue vendor/dev-ed25519 "$(dev_subj 4 SN0004)" vendor/ica ee ed25519
issue vendor/notlisted "$(dev_subj 999 SN0999)" vendor/ica ee
# chains to the vendor root, but has neither serialNumber nor subjectKeyIdentifier: it must
# never pass as the device its senderKID names
issue vendor/noserial "/C=DE/O=Vendor/CN=Device without serial" vendor/ica ee_noski

# The expired and revoked devices go through `openssl ca`: OpenSSL 3.0's x509 has no way to
# set a start date in the past, and a CRL needs the CA database anyway.
mkdir -p vendor/db
: > vendor/db/index.txt
echo "unique_subject = no" > vendor/db/index.txt.attr
openssl rand -hex 8 > vendor/db/serial
echo 01 > vendor/db/crlnumber
cat > vendor/db/ca.cnf <<EOF
[ca]
default_ca = ica
[ica]
dir = $work/vendor/db
database = \$dir/index.txt
serial = \$dir/serial
crlnumber = \$dir/crlnumber
new_certs_dir = \$dir
certificate = $work/vendor/ica.pem
private_key = $work/vendor/ica.key
default_md = sha256
default_days = $DAYS
default_crl_days = $DAYS
policy = any
copy_extensions = none
unique_subject = no
[any]
commonName = supplied
$(sed -n '/^\[ee\]/,/^$/p' ext.cnf)
$(sed -n '/^\[crl_ext\]/,$p' ext.cnf)
EOF
ca_issue() { # NAME SUBJECT [extra openssl ca args]
    local name=$1 subj=$2
    shift 2
    key "vendor/$name.key"
    openssl req -new -key "vendor/$name.key" -subj "$subj" -config ext.cnf -out "vendor/$name.csr"
    openssl ca -batch -config vendor/db/ca.cnf -preserveDN -notext -extensions ee \
        -in "vendor/$name.csr" -out "vendor/$name.pem" "$@" 2>/dev/null
    rm -f "vendor/$name.csr"
}
ca_issue expired "$(dev_subj 900 SN0900)" -startdate 20200101000000Z -enddate 20210101000000Z
ca_issue revoked "$(dev_subj 901 SN0901)"
openssl ca -batch -config vendor/db/ca.cnf -revoke vendor/revoked.pem \
    -crl_reason keyCompromise 2>/dev/null
openssl ca -batch -config vendor/db/ca.cnf -gencrl -crlexts crl_ext -out vendor/crl.pem 2>/dev/null
openssl crl -in vendor/crl.pem -outform DER -out vendor/crl.der
openssl ca -batch -config vendor/db/ca.cnf -gencrl -crlexts crl_ext \
    -crl_lastupdate 20200101000000Z -crl_nextupdate 20210101000000Z -out vendor/crl-stale.pem \
    2>/dev/null
# Sub-CAs under the vendor root: one revoked by the root's CRL, one without keyCertSign, one
# with pathlen:0 that nevertheless signs another CA. The root's CRL uses the same database
# layout with the root as its CA.
issue vendor/ica2 "/C=DE/O=Vendor/CN=Vendor ICA 2" vendor/root v3_ca
issue vendor/dev-subrevoked "$(dev_subj 5 SN0005)" vendor/ica2 ee
issue vendor/ica-nosign "/C=DE/O=Vendor/CN=Vendor ICA NoSign" vendor/root v3_ca_nosign
issue vendor/dev-nosign "$(dev_subj 6 SN0006)" vendor/ica-nosign ee
issue vendor/ica-pathlen0 "/C=DE/O=Vendor/CN=Vendor ICA PathLen0" vendor/root v3_ca_pathlen0
issue vendor/ica-deep "/C=DE/O=Vendor/CN=Vendor ICA Deep" vendor/ica-pathlen0 v3_ca
issue vendor/dev-deep "$(dev_subj 8 SN0008)" vendor/ica-deep ee
issue vendor/ica-nc "/C=DE/O=Vendor/CN=Vendor ICA Constrained" vendor/root v3_ca_nc
issue vendor/dev-nc-ok "/C=DE/O=Vendor/OU=Permitted/CN=Device 9/serialNumber=SN0009" \
    vendor/ica-nc ee
issue vendor/dev-nc-bad "/C=DE/O=Other/CN=Device 10/serialNumber=SN0010" vendor/ica-nc ee
: > vendor/db/index.txt
sed -e "s#$work/vendor/ica.pem#$work/vendor/root.pem#" -e "s#$work/vendor/ica.key#$work/vendor/root.key#" \
    vendor/db/ca.cnf > vendor/db/root.cnf
openssl ca -batch -config vendor/db/root.cnf -revoke vendor/ica2.pem -crl_reason keyCompromise \
    2>/dev/null
openssl ca -batch -config vendor/db/root.cnf -gencrl -crlexts crl_ext -out vendor/root-crl.pem \
    2>/dev/null
rm -rf vendor/db

for d in dev1 dev2 dev-rsa dev-ed25519 expired revoked notlisted noserial; do
    cat "vendor/$d.pem" vendor/ica.pem > "vendor/$d.chain.pem"
done
cat vendor/dev-subrevoked.pem vendor/ica2.pem > vendor/dev-subrevoked.chain.pem
cat vendor/dev-nosign.pem vendor/ica-nosign.pem > vendor/dev-nosign.chain.pem
cat vendor/ica-deep.pem vendor/ica-pathlen0.pem > vendor/deep-cas.pem
cat vendor/dev-deep.pem vendor/deep-cas.pem > vendor/dev-deep.chain.pem
cat vendor/dev-nc-ok.pem vendor/ica-nc.pem > vendor/dev-nc-ok.chain.pem
cat vendor/dev-nc-bad.pem vendor/ica-nc.pem > vendor/dev-nc-bad.chain.pem
printf '%s\n' SN0001 SN0002 SN0003 SN0004 SN0005 SN0006 SN0008 SN0009 SN0010 SN0900 SN0901 \
    > vendor/allowlist.txt

# --- unknown vendor ---
root unknown/root "/C=DE/O=Unknown Vendor/CN=Unknown Root CA"
issue unknown/dev "/C=DE/O=Unknown Vendor/CN=Device 1/serialNumber=SN0001" unknown/root ee
# the vendor ICA's CRL, its TBS signed by a key that is not the ICA's
openssl crl -in vendor/crl.pem -outform DER -out forged.der
python3 - forged.der unknown/root.key vendor/crl-forged.pem <<'PY'
import base64, subprocess, sys
der = open(sys.argv[1], 'rb').read()
def tlv(b, i):  # (content offset, content length) of the TLV at i
    n = b[i + 1]
    if n < 0x80:
        return i + 2, n
    k = n & 0x7f
    return i + 2 + k, int.from_bytes(b[i + 2:i + 2 + k], 'big')
def enc(tag, body):
    n = len(body)
    if n < 0x80:
        return bytes([tag, n]) + body
    nb = n.to_bytes((n.bit_length() + 7) // 8, 'big')
    return bytes([tag, 0x80 | len(nb)]) + nb + body
c, _ = tlv(der, 0)
tc, tl = tlv(der, c)
tbs = der[c:tc + tl]
ac, al = tlv(der, tc + tl)
alg = der[tc + tl:ac + al]
sig = subprocess.run(['openssl', 'dgst', '-sha256', '-sign', sys.argv[2]], input=tbs,
                     capture_output=True, check=True).stdout
b64 = base64.b64encode(enc(0x30, tbs + alg + enc(0x03, b'\x00' + sig))).decode()
with open(sys.argv[3], 'w') as f:
    f.write('-----BEGIN X509 CRL-----\n')
    for i in range(0, len(b64), 64):
        f.write(b64[i:i + 64] + '\n')
    f.write('-----END X509 CRL-----\n')
PY
rm -f forged.der

# --- operator ---
root operator/root "/O=Operator/CN=Operator Root CA"
issue operator/ica "/O=Operator/CN=Operator Issuing CA" operator/root v3_ca
issue operator/ra "/O=Operator/CN=raproxy RA" operator/ica ra
cp operator/ica.pem operator/ra.chain.pem
issue operator/device "/O=Operator/CN=Device 7/serialNumber=SN0007" operator/ica ee

# --- mock CA ---
issue ca/srv "/O=Operator/CN=Mock CA" operator/ica ee
issue ca/issued "/O=Operator/CN=Device 1/serialNumber=SN0001" operator/ica ee
cat operator/ica.pem operator/root.pem > ca/chain.pem

# --- MAC secrets ---
# kid-1 stands for device SN0001 (on the allowlist); kid-2 has no serial= and so is its own
# serial, which no allowlist lists.
printf '%s\n' "kid-1 pbm-secret-1 serial=SN0001" "kid-2 pbm-secret-2" \
    "kid-3 pbm-secret-3 serial=SN0002 bodies=ir,certConf,pollReq" > mac/secrets.txt

# Sanity: every chain verifies (and the expired/revoked ones fail for the right reason).
v() { openssl verify -CAfile "$1" "${@:2}" >/dev/null; }
v tls/ca.pem tls/server.pem tls/server2.pem tls/client.pem
v vendor/root.pem -untrusted vendor/ica.pem vendor/dev1.pem vendor/dev2.pem vendor/dev-rsa.pem \
    vendor/dev-ed25519.pem vendor/notlisted.pem vendor/revoked.pem vendor/noserial.pem
if openssl x509 -in vendor/noserial.pem -noout -ext subjectKeyIdentifier 2>/dev/null | grep -q .; then
    echo "test-pki: noserial.pem has a subjectKeyIdentifier" >&2
    exit 1
fi
v vendor/root.pem -untrusted vendor/ica.pem -no_check_time vendor/expired.pem
if v vendor/root.pem -untrusted vendor/ica.pem vendor/expired.pem 2>/dev/null; then
    echo "test-pki: expired.pem is not expired" >&2
    exit 1
fi
if v vendor/root.pem -untrusted vendor/ica.pem -crl_check -CRLfile vendor/crl.pem \
    vendor/revoked.pem 2>/dev/null; then
    echo "test-pki: revoked.pem is not revoked by crl.pem" >&2
    exit 1
fi
v operator/root.pem -untrusted operator/ica.pem operator/ra.pem ca/srv.pem ca/issued.pem \
    operator/device.pem
v vendor/root.pem -untrusted vendor/ica2.pem vendor/dev-subrevoked.pem
v vendor/root.pem -untrusted vendor/ica-nc.pem vendor/dev-nc-ok.pem
fails() { # WHAT COMMAND...: the command must fail
    local what=$1
    shift
    if "$@" >/dev/null 2>&1; then
        echo "test-pki: $what" >&2
        exit 1
    fi
}
fails "ica2.pem is not revoked by root-crl.pem" v vendor/root.pem -untrusted vendor/ica2.pem \
    -crl_check_all -CRLfile vendor/root-crl.pem -CRLfile vendor/crl.pem vendor/dev-subrevoked.pem
fails "openssl accepts a CA without keyCertSign" v vendor/root.pem \
    -untrusted vendor/ica-nosign.pem vendor/dev-nosign.pem
fails "openssl accepts a name outside the CA's nameConstraints" v vendor/root.pem \
    -untrusted vendor/ica-nc.pem vendor/dev-nc-bad.pem
fails "openssl accepts a chain beyond pathlen:0" v vendor/root.pem \
    -untrusted vendor/deep-cas.pem vendor/dev-deep.pem
if openssl crl -in vendor/crl-forged.pem -CAfile vendor/ica.pem -noout 2>&1 | grep -q "verify OK"
then
    echo "test-pki: crl-forged.pem verifies with the ICA" >&2
    exit 1
fi
fails "crl-stale.pem is current" v vendor/root.pem -untrusted vendor/ica.pem -crl_check \
    -CRLfile vendor/crl-stale.pem vendor/dev1.pem
v unknown/root.pem unknown/dev.pem

rm -f ext.cnf
date -u +%Y-%m-%dT%H:%M:%SZ > .done
cd "$parent"
rm -rf "$out"
mv "$work" "$out"
trap - EXIT
