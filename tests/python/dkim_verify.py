"""An independent DKIM verifier (dkimpy) for messages signed by the mta.

Usage: dkim_verify.py RECORDS MESSAGE
RECORDS is a file of lines "<selector>._domainkey.<domain> <TXT record>"; they
answer every DNS query, so no real DNS is used. MESSAGE is the signed message.
Prints one line per DKIM-Signature field, top to bottom: "pass" or "fail".
Exits non-zero only on usage errors.
"""
import sys

import dkim

records_path, message_path = sys.argv[1], sys.argv[2]
records = {}
with open(records_path, "rb") as f:
    for line in f:
        line = line.strip()
        if line:
            name, txt = line.split(b" ", 1)
            records[name.lower().rstrip(b".") ] = txt


def dnsfunc(name, timeout=5):
    if isinstance(name, str):
        name = name.encode()
    return records.get(name.lower().rstrip(b"."))


with open(message_path, "rb") as f:
    message = f.read()

verifier = dkim.DKIM(message)
count = sum(
    1 for name, _ in verifier.headers if name.lower() == b"dkim-signature"
)
for idx in range(count):
    try:
        ok = verifier.verify(idx=idx, dnsfunc=dnsfunc)
    except dkim.DKIMException as e:
        print(f"error {e}", file=sys.stderr)
        ok = False
    print("pass" if ok else "fail")
    sys.stdout.flush()
