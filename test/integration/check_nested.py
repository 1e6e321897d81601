#!/usr/bin/python3
"""Checks a nested message raproxy sent to the CA (RFC 9810 §5.1.3.4): it decodes with
pyasn1_modules.rfc4210, wraps exactly the device's request, keeps its transactionID and
senderNonce, names the RA as sender, and its signature over ProtectedPart verifies with
the RA certificate (checked by `openssl dgst`).
Usage: check_nested.py SENT.der DEVICE_REQUEST.der RA_CERT.pem"""
import os
import subprocess
import sys
import tempfile
from pyasn1.codec.der import decoder, encoder
from pyasn1.type import univ
from pyasn1_modules import rfc4210

sent_der = open(sys.argv[1], "rb").read()
orig_der = open(sys.argv[2], "rb").read()
sent, rest = decoder.decode(sent_der, asn1Spec=rfc4210.PKIMessage())
assert not rest, "trailing bytes"
body = sent["body"]
assert body.getName() == "nested", "body is %s" % body.getName()
inner = body["nested"]
assert len(inner) == 1, "one inner message"
assert encoder.encode(inner[0]) == orig_der, "inner message is not the device's request"
orig, _ = decoder.decode(orig_der, asn1Spec=rfc4210.PKIMessage())
assert sent["header"]["transactionID"] == orig["header"]["transactionID"]
assert sent["header"]["senderNonce"] == orig["header"]["senderNonce"]
assert sent["header"]["sender"] != orig["header"]["sender"]

pp = univ.SequenceOf()  # ProtectedPart ::= SEQUENCE { header, body }: re-encode both
pp_der = encoder.encode(sent["header"]) + encoder.encode(sent["body"])
n = len(pp_der)
if n < 128:
    lenb = bytes([n])
elif n < 256:
    lenb = bytes([0x81, n])
else:
    lenb = bytes([0x82, n >> 8, n & 0xFF])
pp_der = b"\x30" + lenb + pp_der
sig = sent["protection"].asOctets()
with tempfile.TemporaryDirectory() as d:
    open(os.path.join(d, "pp"), "wb").write(pp_der)
    open(os.path.join(d, "sig"), "wb").write(sig)
    pub = subprocess.run(["openssl", "x509", "-in", sys.argv[3], "-pubkey", "-noout"],
                         check=True, capture_output=True).stdout
    open(os.path.join(d, "pub"), "wb").write(pub)
    r = subprocess.run(["openssl", "dgst", "-sha256", "-verify", os.path.join(d, "pub"),
                        "-signature", os.path.join(d, "sig"), os.path.join(d, "pp")],
                       capture_output=True)
    assert r.returncode == 0, "RA signature does not verify: %s" % r.stdout
print("ok")
