#!/bin/sh
# The FastCGI program Apache mod_fcgid runs for Mailgate (mailgate-fcgid.conf).
# mod_fcgid starts it with a listening socket as fd 0, and `mailgate serve`
# without --socket or --listen serves that socket. mod_fcgid hands each
# process one request at a time, so one worker thread is all it needs; for
# more at once it starts more processes, all on this one data directory.
# Other options: `mailgate help serve`.
exec /usr/bin/mailgate serve --data-dir /var/lib/mailgate --threads 1
