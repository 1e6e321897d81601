#!/usr/bin/python3
"""Checks a message raproxy sent to the CA: it decodes with pyasn1_modules.rfc4210, its
sender is the RA, and transactionID / senderNonce equal the device's request.
Usage: check_reprotected.py SENT.der DEVICE_REQUEST.der"""
import sys
from pyasn1.codec.der import decoder
from pyasn1_modules import rfc4210

sent, _ = decoder.decode(open(sys.argv[1], "rb").read(), asn1Spec=rfc4210.PKIMessage())
orig, _ = decoder.decode(open(sys.argv[2], "rb").read(), asn1Spec=rfc4210.PKIMessage())
sh, oh = sent["header"], orig["header"]
assert sh["transactionID"] == oh["transactionID"], "transactionID changed"
assert sh["senderNonce"] == oh["senderNonce"], "senderNonce changed"
assert sh["sender"] != oh["sender"], "sender not replaced by the RA"
assert sent["body"] == orig["body"], "body changed"
assert sent["extraCerts"].isValue and len(sent["extraCerts"]) >= 1, "no RA certificate"
print("ok")
