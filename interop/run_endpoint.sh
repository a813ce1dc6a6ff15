#!/usr/bin/env bash
# The quic-interop-runner endpoint contract for Segue's hq-interop endpoints
# (https://github.com/quic-interop/quic-interop-runner): ROLE, TESTCASE, REQUESTS,
# SSLKEYLOGFILE (TLS secrets) and QLOGDIR (one qlog trace per connection), which the segue
# binary reads itself; exit 127 for a test case we do not support.
#
# Paths default to the runner's and can be moved for a run outside its containers:
#   WWW=/www DOWNLOADS=/downloads CERTS=/certs PORT=443 SEGUE=segue SEGUE_LAB=segue-lab
#   (the server is `segue hq serve`, the client `segue-lab hq get`)
#   (server: $CERTS/cert.pem and $CERTS/priv.key; client: trusts $CERTS/ca.pem)
set -euo pipefail

ROLE=${ROLE:?ROLE must be client or server}
TESTCASE=${TESTCASE:?TESTCASE must be set}
WWW=${WWW:-/www}
DOWNLOADS=${DOWNLOADS:-/downloads}
CERTS=${CERTS:-/certs}
PORT=${PORT:-443}
SEGUE=${SEGUE:-segue}
SEGUE_LAB=${SEGUE_LAB:-segue-lab}

# Cases this endpoint supports, and the flag each needs.
flags=()
# Loss, corruption, long RTT and blackholes come from the runner's network simulator: for an
# endpoint they are plain transfers. The server serves hq-interop and h3 whatever the case.
case "$TESTCASE" in
  handshake|transfer|multiplexing|longrtt|blackhole) ;;
  handshakeloss|transferloss|handshakecorruption|transfercorruption) ;;
  chacha20) [ "$ROLE" = client ] && flags+=(--chacha20) ;;
  retry) [ "$ROLE" = server ] && flags+=(--retry) ;;
  http3) [ "$ROLE" = client ] && flags+=(--http3) ;;
  resumption) [ "$ROLE" = client ] && flags+=(--resumption) ;;
  zerortt) [ "$ROLE" = client ] && flags+=(--zero-rtt) ;;
  keyupdate) [ "$ROLE" = client ] && flags+=(--key-update) ;;
  *) echo "test case $TESTCASE not supported" >&2; exit 127 ;;
esac

case "$ROLE" in
  server)
    exec "$SEGUE" hq serve --www "$WWW" --listen "[::]:$PORT" \
      --cert "$CERTS/cert.pem" --key "$CERTS/priv.key" "${flags[@]}"
    ;;
  client)
    # shellcheck disable=SC2086 # REQUESTS is a space-separated list of URLs
    exec "$SEGUE_LAB" hq get --ca "$CERTS/ca.pem" --downloads "$DOWNLOADS" "${flags[@]}" ${REQUESTS:?REQUESTS must list URLs}
    ;;
  *) echo "unknown ROLE $ROLE" >&2; exit 1 ;;
esac
