#!/usr/bin/env bash
# The quic-interop-runner endpoint contract for Segue's hq-interop endpoints
# (https://github.com/quic-interop/quic-interop-runner): ROLE, TESTCASE, REQUESTS,
# SSLKEYLOGFILE; exit 127 for a test case we do not support.
#
# Paths default to the runner's and can be moved for a run outside its containers:
#   WWW=/www DOWNLOADS=/downloads CERTS=/certs PORT=443 SEGUE=segue
#   (server: $CERTS/cert.pem and $CERTS/priv.key; client: trusts $CERTS/ca.pem)
set -euo pipefail

ROLE=${ROLE:?ROLE must be client or server}
TESTCASE=${TESTCASE:?TESTCASE must be set}
WWW=${WWW:-/www}
DOWNLOADS=${DOWNLOADS:-/downloads}
CERTS=${CERTS:-/certs}
PORT=${PORT:-443}
SEGUE=${SEGUE:-segue}

# Cases this endpoint supports, and the flag each needs.
flags=()
case "$TESTCASE" in
  handshake|transfer|multiplexing) ;;
  chacha20) [ "$ROLE" = client ] && flags+=(--chacha20) ;;
  retry) [ "$ROLE" = server ] && flags+=(--retry) ;;
  *) echo "test case $TESTCASE not supported" >&2; exit 127 ;;
esac

case "$ROLE" in
  server)
    exec "$SEGUE" hq serve --www "$WWW" --listen "[::]:$PORT" \
      --cert "$CERTS/cert.pem" --key "$CERTS/priv.key" "${flags[@]}"
    ;;
  client)
    # shellcheck disable=SC2086 # REQUESTS is a space-separated list of URLs
    exec "$SEGUE" hq get --ca "$CERTS/ca.pem" --downloads "$DOWNLOADS" "${flags[@]}" ${REQUESTS:?REQUESTS must list URLs}
    ;;
  *) echo "unknown ROLE $ROLE" >&2; exit 1 ;;
esac
