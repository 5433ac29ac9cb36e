#!/usr/bin/python3
"""What Python's email package (policy=default) makes of one received
message: prints it as JSON (EndToEndTests' ParsedEmail).

For a multipart message, `structure` is its tree of content types, e.g.
"multipart/mixed(multipart/alternative(text/plain,text/html),application/pdf)",
and `parts` lists every leaf part in order with its decoded bytes (base64).
`defects` holds the defects Python found anywhere in the message.

Usage: parse_email.py MESSAGE.eml
"""
import base64, email, email.policy, json, sys
data = open(sys.argv[1], "rb").read()
m = email.message_from_bytes(data, policy=email.policy.default)
def s(v):
    return None if v is None else str(v)
body = None
if not m.is_multipart():
    body = m.get_content()

def structure(part):
    if part.is_multipart():
        return part.get_content_type() + "(" + ",".join(structure(p) for p in part.iter_parts()) + ")"
    return part.get_content_type()

parts = []
defects = []
for part in m.walk():
    defects += [repr(d) for d in part.defects]
    if part.is_multipart():
        continue
    payload = part.get_payload(decode=True) or b""
    parts.append({
        "contentType": part.get_content_type(),
        "charset": part.get_content_charset(),
        "disposition": part.get_content_disposition(),
        "filename": part.get_filename(),
        "contentID": s(part.get("Content-ID")),
        "transferEncoding": s(part.get("Content-Transfer-Encoding")),
        "bytes": base64.b64encode(payload).decode("ascii"),
    })

print(json.dumps({
    "subject": s(m["subject"]), "to": s(m["to"]), "from": s(m["from"]),
    "headers": [[k, str(v)] for k, v in m.items()],
    "body": body, "contentType": m.get_content_type(), "charset": m.get_content_charset(),
    "transferEncoding": s(m.get("Content-Transfer-Encoding")),
    "structure": structure(m), "parts": parts,
    "defects": defects,
}))
