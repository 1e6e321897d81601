#!/usr/bin/python3
"""An independent opinion on our encoders: check_rfc4210.py FILE [BODY]

Decodes FILE as one DER PKIMessage with pyasn1_modules.rfc4210 (RFC 4210's ASN.1 module,
compiled by another team, sharing no code with raproxy), requires that nothing follows it
and that re-encoding gives the same bytes (so the input is DER, not just BER), and, with
BODY, that the body is of that type (pyasn1's names: "error", "pkiconf", "nested", "gen" for
genp, ...). Prints the body type; exits non-zero on any failure."""
import sys

from pyasn1.codec.der import decoder, encoder
from pyasn1_modules import rfc4210


def main():
    if len(sys.argv) not in (2, 3):
        print(__doc__, file=sys.stderr)
        return 2
    data = open(sys.argv[1], "rb").read()
    try:
        msg, rest = decoder.decode(data, asn1Spec=rfc4210.PKIMessage())
    except Exception as e:  # pyasn1 raises several unrelated types
        print(f"not a PKIMessage: {e}", file=sys.stderr)
        return 1
    if rest:
        print(f"{len(rest)} trailing bytes", file=sys.stderr)
        return 1
    if encoder.encode(msg) != data:
        print("not DER: re-encoding differs", file=sys.stderr)
        return 1
    body = msg["body"].getName()
    print(body)
    if len(sys.argv) == 3 and body != sys.argv[2]:
        print(f"body is {body}, not {sys.argv[2]}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
