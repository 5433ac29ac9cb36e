#!/usr/bin/python3
"""Parses rendered messages with Python's email package (policy=default):
prints one JSON object per file (MIMETests' PythonParsed), with every
defect the parser found.

Usage: parse_rendered_messages.py MESSAGE.eml...
"""
import email, email.policy, json, sys
out = []
for path in sys.argv[1:]:
    with open(path, 'rb') as f:
        data = f.read()
    msg = email.message_from_bytes(data, policy=email.policy.default)
    defects = [repr(d) for d in msg.defects]
    for name in msg.keys():
        defects += [name + ': ' + repr(d) for d in getattr(msg[name], 'defects', ())]
    def mbox(name):
        a = msg[name].addresses
        if len(a) != 1:
            defects.append(name + ': %d addresses' % len(a))
            return '', ''
        return a[0].display_name, a[0].addr_spec
    fd, fa = mbox('From')
    td, ta = mbox('To')
    out.append(dict(subject=str(msg['Subject']), content=msg.get_content(),
        from_display=fd, from_addr=fa, to_display=td, to_addr=ta,
        date=str(msg['Date'].datetime.isoformat()), message_id=str(msg['Message-ID']),
        mime_version=str(msg['MIME-Version']), cte=str(msg['Content-Transfer-Encoding']),
        defects=defects))
json.dump(out, sys.stdout)
