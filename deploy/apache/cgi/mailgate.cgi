#!/bin/sh
# Mailgate as a plain CGI program (Apache mod_cgi, e.g. shared hosting): the
# web server starts it once per request, with the request in its environment
# and the body on stdin; no daemon runs between requests. Set the two paths:
# the mailgate binary and its data directory (outside the web root; it must
# belong to the user CGI programs run as).
# --base-path: this script's own URL, so /DIR/mailgate.cgi/token is /token
# (.htaccess rewrites /DIR/token to it). Other options: `mailgate help serve`.
exec /usr/bin/mailgate serve --data-dir /var/lib/mailgate --base-path "$SCRIPT_NAME"
