"""Verifies a message's DKIM signature with dkimpy, an implementation independent
of gazette's (lettre's) signer. Usage: verify.py MESSAGE.eml "v=DKIM1; k=…; p=…"
The DNS lookup is answered with the given record. Prints "ok" or "fail: why"."""
import sys

import dkim

message = open(sys.argv[1], "rb").read()
record = sys.argv[2].encode()


def dns(name, timeout=5):
    return record


try:
    good = dkim.verify(message, dnsfunc=dns)
except Exception as e:  # dkimpy raises on malformed signatures
    print(f"fail: {e}")
    sys.exit(1)
print("ok" if good else "fail: signature does not verify")
sys.exit(0 if good else 1)
