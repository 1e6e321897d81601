#!/usr/bin/python3
"""Re-protect a signed PKIMessage with another signer: resign.py IN OUT KEY CERT [EXTRA...]

Used by gen.sh for ir-ed25519.der: `openssl cmp` 3.0 cannot protect with Ed25519 ("unsupported
key type"), so gen.sh lets it write an ordinary EC-signed ir and this script swaps the signer:
header sender := CERT's subject, senderKID := CERT's subjectKeyIdentifier, protectionAlg :=
id-Ed25519; protection := Ed25519 signature (openssl pkeyutl -rawin) over ProtectedPart;
extraCerts := CERT, EXTRA... Everything else (body, IDs, nonces, time) stays byte-exact.
DER handled at the byte level (tag-length-value), so nothing is re-encoded by accident."""
import subprocess
import sys
import tempfile

OID_ED25519 = bytes.fromhex("06032b6570")


def tlv(tag, content):
    n = len(content)
    if n < 0x80:
        length = bytes([n])
    else:
        b = n.to_bytes((n.bit_length() + 7) // 8, "big")
        length = bytes([0x80 | len(b)]) + b
    return bytes([tag]) + length + content


def children(der):
    """The TLVs inside the single TLV `der`: list of (tag, whole TLV, content)."""
    out, i = [], header_len(der, 0)[0]
    while i < len(der):
        hl, cl = header_len(der, i)
        out.append((der[i], der[i : i + hl + cl], der[i + hl : i + hl + cl]))
        i += hl + cl
    return out


def header_len(der, i):
    first = der[i + 1]
    if first < 0x80:
        return 2, first
    k = first & 0x7F
    return 2 + k, int.from_bytes(der[i + 2 : i + 2 + k], "big")


def cert_der(pem_path):
    return subprocess.run(
        ["openssl", "x509", "-in", pem_path, "-outform", "DER"], check=True, capture_output=True
    ).stdout


def subject_and_ski(cert):
    tbs = children(cert)[0][1]
    fields = children(tbs)
    subject = fields[5][1]  # [0] version, serial, signature, issuer, validity, subject
    ski = None
    for tag, whole, content in fields:
        if tag == 0xA3:  # [3] extensions
            for _, ext, _ in children(children(whole)[0][1]):
                parts = children(ext)
                if parts[0][1] == bytes.fromhex("0603551d0e"):
                    ski = children(parts[-1][1])[0][2]  # OCTET STRING { OCTET STRING }
    return subject, ski


def main():
    src, dst, key, cert_path, extra = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5:]
    msg = open(src, "rb").read()
    parts = children(msg)
    header, body = parts[0][1], parts[1][1]
    cert = cert_der(cert_path)
    subject, ski = subject_and_ski(cert)
    fields = []
    for tag, whole, _ in children(header):
        if tag == 0xA4 and not any(t == 0xA4 for t, _ in fields):
            whole = tlv(0xA4, subject)  # sender (the first [4]; the second is recipient)
        elif tag == 0xA1:
            whole = tlv(0xA1, tlv(0x30, OID_ED25519))
        elif tag == 0xA2:
            whole = tlv(0xA2, tlv(0x04, ski))
        fields.append((tag, whole))
    header = tlv(0x30, b"".join(w for _, w in fields))
    with tempfile.NamedTemporaryFile() as tbs:
        tbs.write(tlv(0x30, header + body))
        tbs.flush()
        sig = subprocess.run(
            ["openssl", "pkeyutl", "-sign", "-rawin", "-inkey", key, "-in", tbs.name],
            check=True,
            capture_output=True,
        ).stdout
    certs = [cert] + [cert_der(p) for p in extra]
    out = header + body + tlv(0xA0, tlv(0x03, b"\x00" + sig)) + tlv(0xA1, tlv(0x30, b"".join(certs)))
    open(dst, "wb").write(tlv(0x30, out))


if __name__ == "__main__":
    main()
