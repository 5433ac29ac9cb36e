#!/usr/bin/python3
"""PyJWT (Debian python3-jwt), a library nobody here wrote, for
EndToEndTests' PyJWT helper.

Usage:
  pyjwt_tool.py encode KEYFILE PAYLOAD_JSON ALGORITHM HEADERS_JSON [KEY_EXPRESSION]
      prints jwt.encode(payload, key, algorithm, headers); the key is the
      bytes of KEYFILE, or the Python expression KEY_EXPRESSION (which may
      use `key`), e.g. a freshly generated RSA private key.
  pyjwt_tool.py decode KEYFILE TOKEN
      prints the claims of jwt.decode(token, key, algorithms=["HS256"]) as
      JSON (exp and sub required), or fails.
"""
import json, sys, jwt

command = sys.argv[1]
key = open(sys.argv[2], "rb").read()
if command == "encode":
    payload = json.loads(sys.argv[3])
    headers = json.loads(sys.argv[5])
    k = eval(sys.argv[6]) if len(sys.argv) > 6 else key
    print(jwt.encode(payload, k, algorithm=sys.argv[4], headers=headers))
elif command == "decode":
    print(json.dumps(jwt.decode(sys.argv[3], key, algorithms=["HS256"], options={"require": ["exp", "sub"]})))
else:
    sys.exit("unknown command " + command)
