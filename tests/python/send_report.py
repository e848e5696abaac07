"""Sends one report message (a DSN or an ARF complaint) with Python's standard smtplib.

Usage: send_report.py HOST PORT SENDER RECIPIENT FILE
SENDER may be empty (the null sender of a DSN). FILE holds the message (LF or CRLF lines).
Prints one JSON object: {"rcpt": [code, text], "data": [code, text] or null}.
"""
import json
import smtplib
import sys

host, port, sender, rcpt, path = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
with open(path, "rb") as f:
    body = f.read()

out = {"rcpt": None, "data": None}
with smtplib.SMTP(host, port, timeout=30) as s:
    code, _ = s.ehlo("reporter.example")
    if code != 250:
        sys.exit(f"EHLO: {code}")
    code, text = s.mail(sender)
    if code != 250:
        sys.exit(f"MAIL: {code} {text!r}")
    code, text = s.rcpt(rcpt)
    out["rcpt"] = [code, text.decode(errors="replace")]
    if code == 250:
        code, text = s.data(body)
        out["data"] = [code, text.decode(errors="replace")]
    else:
        s.rset()
print(json.dumps(out))
