#!/usr/bin/python3
"""Parses rendered (possibly multipart) messages with Python's email package
(policy=default): prints a JSON list, one object per file (MIMETests'
PythonMessage): the address fields, every header as Python decodes it, the
tree of parts with their decoded payloads, and every defect the parser
found, each prefixed with where (part path and header name).

A payload over 64 KiB is reported as its length and CRC-32 only, so a
multi-megabyte attachment is checked without shipping it back as JSON.

Usage: parse_mime_messages.py MESSAGE.eml...
"""
import base64, email, email.policy, json, sys, zlib

BIG = 64 * 1024


def part_info(part, path, defects):
    defects += ['%s: %r' % (path, d) for d in part.defects]
    for name in part.keys():
        for value in part.get_all(name):
            defects += ['%s/%s: %r' % (path, name, d) for d in getattr(value, 'defects', ())]
    info = dict(
        content_type=part.get_content_type(),
        disposition=part.get_content_disposition(),
        filename=part.get_filename(),
        ct_name=part['Content-Type'].params.get('name') if 'Content-Type' in part else None,
        content_id=str(part['Content-ID']) if 'Content-ID' in part else None,
        cte=str(part['Content-Transfer-Encoding']) if 'Content-Transfer-Encoding' in part else None,
        charset=part.get_content_charset(),
        text=None, payload=None, payload_length=None, payload_crc32=None, children=[])
    if part.is_multipart():
        info['children'] = [part_info(p, '%s.%d' % (path, i), defects)
                            for i, p in enumerate(part.iter_parts())]
    else:
        data = part.get_payload(decode=True) or b''
        info['payload_length'] = len(data)
        info['payload_crc32'] = zlib.crc32(data)
        if len(data) <= BIG:
            info['payload'] = base64.b64encode(data).decode('ascii')
        if part.get_content_maintype() == 'text':
            info['text'] = part.get_content()
    return info


def addresses(msg, name):
    if name not in msg:
        return None
    return [[a.display_name, a.addr_spec] for a in msg[name].addresses]


out = []
for path in sys.argv[1:]:
    with open(path, 'rb') as f:
        msg = email.message_from_bytes(f.read(), policy=email.policy.default)
    defects = []
    root = part_info(msg, 'root', defects)
    out.append(dict(
        subject=str(msg['Subject']),
        from_addresses=addresses(msg, 'From'), to=addresses(msg, 'To'), cc=addresses(msg, 'Cc'),
        reply_to=addresses(msg, 'Reply-To'), bcc=addresses(msg, 'Bcc'),
        headers=[[k, str(v)] for k, v in msg.items()],
        root=root, defects=defects))
json.dump(out, sys.stdout)
