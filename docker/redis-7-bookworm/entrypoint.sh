#!/bin/sh
# Without a configuration file Redis listens everywhere but, in protected
# mode, refuses every client that is not on loopback: in a container that is
# every client. Turn it off for a bare `redis-server [options]` command.
set -e
if [ "$1" = redis-server ] && [ "${2#/}" = "$2" ]; then
    shift
    exec redis-server --protected-mode no "$@"
fi
exec "$@"
