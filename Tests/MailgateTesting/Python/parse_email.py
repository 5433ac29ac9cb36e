#!/usr/bin/python3
"""What Python's email package (policy=default) makes of one received
message: prints it as JSON (EndToEndTests' ParsedEmail).

Usage: parse_email.py MESSAGE.eml
"""
import email, email.policy, json, sys
data = open(sys.argv[1], "rb").read()
m = email.message_from_bytes(data, policy=email.policy.default)
def s(v):
    return None if v is None else str(v)
body = None
if not m.is_multipart():
    body = m.get_content()
print(json.dumps({
    "subject": s(m["subject"]), "to": s(m["to"]), "from": s(m["from"]),
    "headers": [[k, str(v)] for k, v in m.items()],
    "body": body, "contentType": m.get_content_type(), "charset": m.get_content_charset(),
    "transferEncoding": s(m.get("Content-Transfer-Encoding")),
    "defects": [repr(d) for d in m.defects],
}))
