"""Python's ssl + smtplib as independent TLS clients of the mta binary.

Usage: tls_client.py CASE HOST PORT CAFILE [ARGS...]; prints one JSON object on success and
exits non-zero (with a message on stderr) when the server misbehaves.
"""
import json
import smtplib
import socket
import ssl
import sys


def context(cafile):
    ctx = ssl.create_default_context(cafile=cafile)
    ctx.check_hostname = True
    return ctx


def fail(msg):
    print(msg, file=sys.stderr)
    sys.exit(1)


def connect(host, port, name):
    s = smtplib.SMTP(timeout=20)
    s.connect(host, port)
    s._host = name  # the name used for SNI and certificate checks
    return s


def case_starttls(host, port, cafile, name="mx.test"):
    s = connect(host, port, name)
    s.ehlo("client.test")
    if not s.has_extn("starttls"):
        fail("STARTTLS not advertised: %r" % s.esmtp_features)
    code, _ = s.starttls(context=context(cafile))
    if code != 220:
        fail("STARTTLS answered %d" % code)
    s.ehlo("client.test")
    if s.has_extn("starttls"):
        fail("STARTTLS still advertised inside TLS")
    code, _ = s.docmd("STARTTLS")
    if code != 503:
        fail("STARTTLS inside TLS answered %d" % code)
    peer = s.sock.getpeercert()
    cn = dict(x[0] for x in peer["subject"])["commonName"]
    version = s.sock.version()
    body = "Subject: tls\r\n\r\nover TLS\r\n"
    s.sendmail("a@client.test", ["b@local.test"], body)
    s.quit()
    print(json.dumps({"cn": cn, "version": version}))


def case_inject(host, port, cafile):
    sock = socket.create_connection((host, port), timeout=20)
    f = sock.makefile("rb")
    line = f.readline()
    if not line.startswith(b"220"):
        fail("greeting %r" % line)
    sock.sendall(b"EHLO client.test\r\n")
    while True:
        line = f.readline()
        if line[3:4] == b" ":
            break
    # The injected MAIL must be discarded, not executed after the upgrade.
    sock.sendall(b"STARTTLS\r\nMAIL FROM:<evil@client.test>\r\n")
    line = f.readline()
    if not line.startswith(b"220"):
        fail("STARTTLS reply %r" % line)
    tls = context(cafile).wrap_socket(sock, server_hostname="mx.test")
    tf = tls.makefile("rb")
    tls.sendall(b"EHLO client.test\r\n")
    lines = []
    while True:
        line = tf.readline()
        lines.append(line)
        if line[3:4] == b" ":
            break
    if not lines[0].startswith(b"250"):
        fail("first reply inside TLS is not the EHLO reply: %r" % lines)
    tls.sendall(b"RCPT TO:<b@local.test>\r\n")
    line = tf.readline()
    if not line.startswith(b"503"):
        fail("RCPT after injected MAIL answered %r (the MAIL was executed)" % line)
    tls.sendall(b"QUIT\r\n")
    tf.readline()
    print(json.dumps({"rcpt": line.decode().strip()}))


def case_implicit(host, port, cafile, user=None, password=None):
    s = smtplib.SMTP_SSL(timeout=20, context=context(cafile))
    s._host = "mx.test"
    s.connect(host, port)
    s.ehlo("client.test")
    if s.has_extn("starttls"):
        fail("STARTTLS advertised on implicit TLS")
    out = {"version": s.sock.version(), "auth": s.esmtp_features.get("auth", "")}
    code, msg = s.docmd("MAIL FROM:<a@client.test>")
    out["mail_without_auth"] = code
    if code == 250:
        fail("MAIL accepted without AUTH on submissions")
    if user is not None:
        s.login(user, password)
        s.sendmail("a@client.test", ["someone@elsewhere.test"], "Subject: sub\r\n\r\nhi\r\n")
        out["sent"] = True
    s.quit()
    print(json.dumps(out))


def case_submission(host, port, cafile, user, password):
    """STARTTLS, then AUTH LOGIN, then a message to a domain only an authenticated user may use."""
    s = connect(host, port, "mx.test")
    s.ehlo("client.test")
    if s.has_extn("auth"):
        fail("AUTH offered before TLS: %r" % s.esmtp_features)
    code, _ = s.docmd("AUTH PLAIN AGFsaWNlAHNlY3JldA==")
    if code != 538:
        fail("AUTH before TLS answered %d" % code)
    code, _ = s.docmd("MAIL FROM:<a@client.test>")
    if code != 530:
        fail("MAIL before AUTH answered %d" % code)
    s.starttls(context=context(cafile))
    s.ehlo("client.test")
    mechs = s.esmtp_features.get("auth", "").split()
    if "PLAIN" not in mechs or "LOGIN" not in mechs:
        fail("mechanisms %r" % mechs)
    s.user, s.password = user, password
    code, _ = s.auth("LOGIN", s.auth_login, initial_response_ok=False)
    if code != 235:
        fail("AUTH LOGIN answered %d" % code)
    code, _ = s.docmd("AUTH PLAIN AGFsaWNlAHNlY3JldA==")
    if code != 503:
        fail("second AUTH answered %d" % code)
    s.sendmail("a@client.test", ["someone@elsewhere.test"], "Subject: sub\r\n\r\nhi\r\n")
    s.quit()
    print(json.dumps({"sent": True}))


def case_auth_then_starttls(host, port, cafile, user, password):
    """AUTH in plaintext (the listener allows it), then STARTTLS: the login is forgotten
    (RFC 3207 4.2), so MAIL needs AUTH again inside TLS."""
    s = connect(host, port, "mx.test")
    s.ehlo("client.test")
    s.user, s.password = user, password
    code, _ = s.auth("PLAIN", s.auth_plain)
    if code != 235:
        fail("plaintext AUTH answered %d" % code)
    s.starttls(context=context(cafile))
    code, _ = s.docmd("MAIL FROM:<a@client.test>")
    if code != 503:
        fail("MAIL before the new EHLO answered %d" % code)
    s.ehlo("client.test")
    code, _ = s.docmd("MAIL FROM:<a@client.test>")
    out = {"mail_after_starttls": code}
    s.docmd("RSET")
    code, _ = s.auth("PLAIN", s.auth_plain)
    out["auth_inside_tls"] = code
    s.quit()
    print(json.dumps(out))


def case_bad_password(host, port, cafile, user, tries):
    """Wrong passwords: 535 each time until the address is throttled (454)."""
    codes = []
    for _ in range(int(tries)):
        s = connect(host, port, "mx.test")
        s.ehlo("client.test")
        s.starttls(context=context(cafile))
        s.ehlo("client.test")
        s.user, s.password = user, "wrong"
        try:
            # One mechanism only: login() would try each advertised one in turn.
            s.auth("PLAIN", s.auth_plain)
            codes.append(235)
        except smtplib.SMTPAuthenticationError as e:
            codes.append(e.smtp_code)
        s.close()
    print(json.dumps({"codes": codes}))


def case_plain_ehlo(host, port):
    s = smtplib.SMTP(host, port, timeout=20)
    s.ehlo("client.test")
    out = {"features": sorted(s.esmtp_features.keys())}
    s.quit()
    print(json.dumps(out))


def main():
    case, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    rest = sys.argv[4:]
    if case == "starttls":
        case_starttls(host, port, *rest)
    elif case == "inject":
        case_inject(host, port, *rest)
    elif case == "implicit":
        case_implicit(host, port, *rest)
    elif case == "submission":
        case_submission(host, port, *rest)
    elif case == "auth_then_starttls":
        case_auth_then_starttls(host, port, *rest)
    elif case == "bad_password":
        case_bad_password(host, port, *rest)
    elif case == "ehlo":
        case_plain_ehlo(host, port)
    else:
        fail("unknown case " + case)


if __name__ == "__main__":
    main()
