#!/usr/bin/python3
"""Logs in to an SMTP server with XOAUTH2 or OAUTHBEARER (smtplib, STARTTLS
verified against --ca-file) and, when the login works, sends one message.
Prints one JSON line: {"mechanisms": [...], "auth_code": n, "auth_reply": "...",
"challenge": "<decoded 334 text or null>", "sent": bool}.

For checking oauth_smtp_server.py; the token is read from stdin so it never
appears on a command line.
"""
import argparse
import base64
import json
import smtplib
import ssl
import sys


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--ca-file", required=True)
    p.add_argument("--mailbox", required=True)
    p.add_argument("--mechanism", choices=["XOAUTH2", "OAUTHBEARER"], default="XOAUTH2")
    args = p.parse_args()
    token = sys.stdin.readline().strip()

    context = ssl.create_default_context(cafile=args.ca_file)
    smtp = smtplib.SMTP("127.0.0.1", args.port, timeout=20)
    smtp.ehlo("probe.invalid")
    smtp.starttls(context=context)
    smtp.ehlo("probe.invalid")
    mechanisms = (smtp.esmtp_features.get("auth") or "").split()
    if args.mechanism == "XOAUTH2":
        blob = "user=%s\x01auth=Bearer %s\x01\x01" % (args.mailbox, token)
    else:
        blob = "n,a=%s,\x01host=127.0.0.1\x01port=%d\x01auth=Bearer %s\x01\x01" % (args.mailbox, args.port, token)
    code, reply = smtp.docmd("AUTH", "%s %s" % (args.mechanism, base64.b64encode(blob.encode()).decode()))
    challenge = None
    if code == 334:
        challenge = base64.b64decode(reply).decode()
        code, reply = smtp.docmd("")
    sent = False
    if code == 235:
        smtp.sendmail(args.mailbox, ["rcpt@example.com"], b"Subject: probe\r\n\r\nHello.\r\n")
        sent = True
    print(json.dumps({"mechanisms": mechanisms, "auth_code": code, "auth_reply": reply.decode(),
                      "challenge": challenge, "sent": sent}))
    try:
        smtp.quit()
    except smtplib.SMTPException:
        pass


if __name__ == "__main__":
    main()
