"""An independent SMTP client (Python's standard smtplib) against a running mta.

Usage: smtplib_client.py HOST PORT
Prints one JSON object per accepted message: {"id", "from", "to", "body"} where body is
the message as the client put it on the wire after un-stuffing (CRLF line endings), so the
caller can compare it byte for byte with the spool. Exits non-zero on any unexpected reply.
"""
import base64
import json
import smtplib
import sys

host, port = sys.argv[1], int(sys.argv[2])
accepted = []


def expect(got, code, what):
    if got[0] != code:
        sys.exit(f"{what}: expected {code}, got {got}")
    return got


def queued_id(reply):
    text = reply[1].decode()
    marker = "queued as "
    if marker not in text:
        sys.exit(f"no queue id in {reply}")
    return text.split(marker, 1)[1].split()[0]


def send(s, sender, rcpts, body, mail_opts=()):
    expect(s.mail(sender, list(mail_opts)), 250, "MAIL")
    for r in rcpts:
        expect(s.rcpt(r), 250, f"RCPT {r}")
    reply = expect(s.data(body), 250, "DATA")
    # smtplib normalises line endings to CRLF and dot-stuffs; the server un-stuffs.
    wire = smtplib._fix_eols(body) if isinstance(body, str) else body
    if isinstance(wire, str):
        wire = wire.encode("utf-8")
    if not wire.endswith(b"\r\n"):
        wire += b"\r\n"
    accepted.append(
        {"id": queued_id(reply), "from": sender, "to": rcpts,
         "body": base64.b64encode(wire).decode()}
    )


with smtplib.SMTP(host, port, timeout=20) as s:
    code, ehlo = s.ehlo("client.example")
    assert code == 250, ehlo
    for kw in ("pipelining", "size", "8bitmime", "smtputf8", "enhancedstatuscodes", "chunking"):
        if not s.has_extn(kw):
            sys.exit(f"EHLO lacks {kw}: {ehlo}")
    body = "Subject: first\r\nFrom: a@client.example\r\n\r\nHello.\r\n.leading dot\r\n..two\r\n"
    send(s, "a@client.example", ["u1@local.test"], body)
    send(s, "", ["u2@local.test", "u3@sub.relay.test", "Postmaster"],
         "Subject: null sender\r\n\r\nbounce-like\r\n")
    # Relay denied for a domain we do not serve (this client is not in trusted_networks).
    expect(s.mail("a@client.example"), 250, "MAIL")
    code, msg = s.rcpt("x@elsewhere.test")
    if code != 554 or not msg.startswith(b"5.7.1"):
        sys.exit(f"relay: {code} {msg}")
    expect(s.rset(), 250, "RSET")
    # SMTPUTF8 and 8BITMIME.
    send(s, "jörg@client.example", ["ü@local.test"],
         "Subject: =?utf-8?q?gr=C3=BC=C3=9Fe?=\r\n\r\ngrüße\r\n".encode("utf-8"),
         mail_opts=("SMTPUTF8", "BODY=8BITMIME"))
    code, msg = s.verify("u1@local.test")
    if code != 252:
        sys.exit(f"VRFY: {code} {msg}")
    code, msg = s.docmd("EXPN", "list")
    if code != 502:
        sys.exit(f"EXPN: {code} {msg}")
    code, msg = s.docmd("FROB")
    if code != 500 or not msg.startswith(b"5.5.1"):
        sys.exit(f"unknown command: {code} {msg}")
    # A large message (1 MiB) with long lines.
    big = ("x" * 990 + "\r\n") * 1060
    send(s, "a@client.example", ["u4@local.test"], "Subject: big\r\n\r\n" + big)

# sendmail() convenience path with a fresh connection, and HELO instead of EHLO.
with smtplib.SMTP(host, port, timeout=20) as s:
    code, _ = s.helo("old.client.example")
    assert code == 250
    expect(s.mail("a@client.example"), 250, "MAIL")
    expect(s.rcpt("u5@local.test"), 250, "RCPT")
    reply = expect(s.data("Subject: helo\r\n\r\nplain\r\n"), 250, "DATA")
    accepted.append({"id": queued_id(reply), "from": "a@client.example", "to": ["u5@local.test"],
                     "body": base64.b64encode(b"Subject: helo\r\n\r\nplain\r\n").decode()})

for m in accepted:
    print(json.dumps(m))
