"""Persistent php-cgi.wasm workers behind a FastCGI listener, the way php-fpm serves PHP.

Each worker is its own OS process (a crash, a trap or a runaway script costs one worker) that
keeps one php-cgi.wasm instance alive and runs PHP's own FastCGI request loop over the
instance's stdin and stdout (patch 0013, PHP_FCGI_STDIO=1). The supervisor accepts FastCGI
connections (a Unix socket, TCP or both) from a front server such as nginx, hands each request
to an idle worker, and enforces php-fpm's controls from outside the module: a request that
runs past `request_terminate_timeout` gets its worker killed and a 504, a worker that dies
mid-request gives that request a 502, and a worker is replaced after `max_requests`.

Modules: fastcgi (records), worker (the process hosting one instance), supervisor (the pool),
locks (SQLite dot-file locks a killed worker left behind).
"""
