#!/usr/bin/env bash
# The interop matrix: Segue's QUIC endpoints (segue hq serve|get: hq-interop and HTTP/3)
# against other stacks, every cell passing only on a verified outcome (downloaded files
# byte-compared with what the server holds, the negotiated cipher, a Retry seen).
#
#   interop/run.sh [--out FILE]      (default: interop/results.md)
#
# Installs its peers on a fresh Debian machine: aioquic from PyPI into target/interop-venv,
# ngtcp2's example client and server (Debian ngtcp2-client, ngtcp2-server) and tshark (to
# decrypt captures with Segue's key log) with apt when run as root. Peers: aioquic over hq-interop and over HTTP/3, ngtcp2 over HTTP/3 (Debian's
# ngtcp2 ships HTTP/3 examples only). Loss cases run through `segue-lab impair`.
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT="$ROOT/interop/results.md"
[ "${1:-}" = "--out" ] && OUT=$2

log() { printf '%s\n' "$*" >&2; }

# --- peers and our binary ---------------------------------------------------------------
# Debian's: ngtcp2's example client and server; tshark, which decrypts captures with the
# secrets Segue writes to SSLKEYLOGFILE.
need=()
command -v gtlsclient >/dev/null 2>&1 || need+=(ngtcp2-client)
command -v gtlsserver >/dev/null 2>&1 || [ -x /usr/sbin/gtlsserver ] || need+=(ngtcp2-server)
command -v tshark >/dev/null 2>&1 || need+=(tshark)
if [ ${#need[@]} -gt 0 ] && [ "$(id -u)" = 0 ]; then
  log "installing ${need[*]}"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
GTLSSERVER=$(command -v gtlsserver || echo /usr/sbin/gtlsserver)
VENV="$ROOT/target/interop-venv"
if ! "$VENV/bin/python" -c 'import aioquic' 2>/dev/null; then
  log "installing aioquic (PyPI) into $VENV"
  python3 -m venv "$VENV" && "$VENV/bin/pip" install -q 'aioquic==1.7.2' || log "aioquic unavailable"
fi
PY="$VENV/bin/python"
AIOQUIC="$ROOT/interop/aioquic_peer.py"
SEGUE=${SEGUE:-}
if [ -z "$SEGUE" ]; then
  (cd "$ROOT" && cargo build -q --locked -p segue-server --bin segue) || exit 1
  SEGUE="$ROOT/target/debug/segue"
fi
# The interop client (`segue-lab hq get`) and the impairment relay of the loss cases
# (`segue-lab impair`) are the lab's.
SEGUE_LAB=${SEGUE_LAB:-}
if [ -z "$SEGUE_LAB" ]; then
  (cd "$ROOT" && cargo build -q --locked -p segue-lab --bin segue-lab) || exit 1
  SEGUE_LAB="$ROOT/target/debug/segue-lab"
fi

# --- a work area: certificates and the files served --------------------------------------
WORK=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done; rm -rf "$WORK"; }
trap cleanup EXIT
"$SEGUE" certs init --dir "$WORK/certs" >/dev/null || exit 1
CA="$WORK/certs/ca.pem" CERT="$WORK/certs/localhost.pem" KEY="$WORK/certs/localhost.key"
WWW="$WORK/www"
mkdir -p "$WWW/m"
head -c 1200 /dev/urandom >"$WWW/small.bin"
head -c 5000000 /dev/urandom >"$WWW/big.bin"
for i in $(seq -w 0 999); do head -c $((RANDOM % 2000 + 1)) /dev/urandom >"$WWW/m/f$i"; done
PORT=$((20000 + RANDOM % 20000))
# A fresh port in $P (not `$(...)`: a subshell's increment would be lost, and two endpoints
# would share a port).
next_port() { PORT=$((PORT + 1)); P=$PORT; }

# Files of a case: "path..." relative to www.
files_of() {
  case $1 in
    handshake|chacha20|retry|handshakeloss) echo small.bin ;;
    transfer|transferloss|keyupdate) echo big.bin ;;
    multiplexing) (cd "$WWW" && ls m | sed 's|^|m/|') ;;
    resumption|zerortt) echo small.bin m/f000 ;;
  esac
}

# Every file downloaded into $1 equals the server's.
verify_files() {
  local dir=$1; shift
  local f
  for f in "$@"; do
    cmp -s "$WWW/$f" "$dir/$(basename "$f")" || { log "  mismatch or missing: $f"; return 1; }
  done
}

# handshakeloss: 30 % loss each way. A connection's first RTT sample can then be seconds
# (the Initials that got through waited for probe timeouts), which makes its probe timeout
# several seconds, doubling with each loss; a client's Finished lost three times in a row then
# takes 40 s and more to get through, while the server, which cannot probe for it, hears
# nothing. So that case gives every endpoint 120 s of idle (and handshake) timeout instead of
# their 30 s (10 s for ngtcp2's handshake), and each client run 150 s: a handshake still
# has to complete, however late. Options for endpoint $1 in case $2, one per line:
idle_opts() {
  [ "$2" = handshakeloss ] || return 0
  case $1 in
    ours*) printf '%s\n' --idle-timeout-secs 120 ;;
    aioquic-*) printf '%s\n' --idle-timeout 120 ;;
    ngtcp2) printf '%s\n' --timeout=120s --handshake-timeout=120s ;;
  esac
}
# Seconds a client run may take in case $1.
round_limit() { if [ "$1" = handshakeloss ]; then echo 150; else echo 60; fi; }

# Starts a server ($1 = ours|aioquic-hq|aioquic-h3|ngtcp2) for case $2 on port $3; its log
# goes to $WORK/server.log.
start_server() {
  local who=$1 case=$2 port=$3 retry=() idle
  mapfile -t idle < <(idle_opts "$who" "$case")
  case $who in
    ours)
      [ "$case" = retry ] && retry=(--retry)
      RUST_LOG=info "$SEGUE" hq serve --www "$WWW" --listen "127.0.0.1:$port" --cert "$CERT" --key "$KEY" "${retry[@]}" "${idle[@]}" >"$WORK/server.log" 2>&1 &
      ;;
    aioquic-hq|aioquic-h3)
      [ "$case" = retry ] && retry=(--retry)
      local h3=(); [ "$who" = aioquic-h3 ] && h3=(--h3)
      "$PY" "$AIOQUIC" server --www "$WWW" --cert "$CERT" --key "$KEY" --port "$port" "${h3[@]}" "${retry[@]}" "${idle[@]}" >"$WORK/server.log" 2>&1 &
      ;;
    ngtcp2)
      [ "$case" = retry ] && retry=(--validate-addr)
      # verbose where its packet log is the evidence (key phase of received packets)
      local quiet=(--quiet); [ "$case" = keyupdate ] && quiet=()
      "$GTLSSERVER" "${quiet[@]}" -d "$WWW" "${retry[@]}" "${idle[@]}" 127.0.0.1 "$port" "$KEY" "$CERT" >"$WORK/server.log" 2>&1 &
      ;;
  esac
  PIDS+=($!)
  sleep 0.7
}

# Runs a client ($1 = ours-hq|ours-h3|aioquic-hq|aioquic-h3|ngtcp2) for case $2 against
# port $3, downloading into $4.
run_client() {
  local who=$1 case=$2 port=$3 dl=$4 urls=() f idle limit
  for f in $(files_of "$case"); do urls+=("https://localhost:$port/$f"); done
  mapfile -t idle < <(idle_opts "$who" "$case")
  limit=$(round_limit "$case")
  local chacha=()
  [ "$case" = resumption ] && chacha=(--resumption)
  [ "$case" = keyupdate ] && chacha=(--key-update)
  [ "$case" = zerortt ] && chacha=(--zero-rtt)
  case $who in
    ours-hq|ours-h3)
      [ "$case" = chacha20 ] && chacha=(--chacha20)
      local h3=(); [ "$who" = ours-h3 ] && h3=(--http3)
      RUST_LOG=info timeout "$limit" "$SEGUE_LAB" hq get --ca "$CA" --downloads "$dl" "${h3[@]}" "${chacha[@]}" "${idle[@]}" "${urls[@]}" >/dev/null 2>"$WORK/client.log"
      ;;
    aioquic-hq|aioquic-h3)
      [ "$case" = chacha20 ] && chacha=(--chacha20)
      local h3=(); [ "$who" = aioquic-h3 ] && h3=(--h3)
      timeout "$limit" "$PY" "$AIOQUIC" client --ca "$CA" --downloads "$dl" "${h3[@]}" "${chacha[@]}" "${idle[@]}" "${urls[@]}" >/dev/null 2>"$WORK/client.log"
      ;;
    ngtcp2)
      # GnuTLS priority strings name its ciphers; verbose where its log is the evidence
      local opts=(--quiet)
      [ "$case" = chacha20 ] && opts=(--ciphers='NORMAL:-VERS-ALL:+VERS-TLS1.3:-CIPHER-ALL:+CHACHA20-POLY1305')
      [ "$case" = keyupdate ] && opts=(--key-update=1ms)
      opts+=("${idle[@]}")
      case $case in
        resumption|zerortt)
          # the first URL on one connection, the rest on a second that resumes the session
          # kept in a file (with its transport parameters, for 0-RTT); verbose for 0-RTT,
          # whose log shows the 0-RTT packets sent, and says if the server rejected them
          local keep=(--session-file="$WORK/ngtcp2-$port.session" --tp-file="$WORK/ngtcp2-$port.tp")
          [ "$case" = resumption ] && keep+=(--disable-early-data)
          local second=(--quiet); [ "$case" = zerortt ] && second=()
          timeout 60 gtlsclient --quiet "${keep[@]}" --exit-on-all-streams-close --download "$dl" localhost "$port" "${urls[0]}" >"$WORK/client.log" 2>&1 \
            && timeout 60 gtlsclient "${second[@]}" "${keep[@]}" --exit-on-all-streams-close --download "$dl" localhost "$port" "${urls[@]:1}" >>"$WORK/client.log" 2>&1
          ;;
        *) timeout "$limit" gtlsclient "${opts[@]}" --exit-on-all-streams-close --download "$dl" localhost "$port" "${urls[@]}" >"$WORK/client.log" 2>&1 ;;
      esac
      ;;
  esac
}

# Whether log $1, without colours, has a line matching $2 (read to the end: `grep -q` in a
# pipeline would make pipefail see the writer's SIGPIPE).
logged() { sed 's/\x1b\[[0-9;]*m//g' "$1" | grep -c -- "$2" >/dev/null; }

# One cell: server $1, client $2, case $3. Prints pass or fail.
cell() {
  local server=$1 client=$2 case=$3
  local sport cport dl rounds=1 ok=1
  next_port; sport=$P
  cport=$sport
  start_server "$server" "$case" "$sport"
  local spid=${PIDS[-1]} rpid=
  case $case in
    transferloss|handshakeloss)
      # as the quic-interop-runner's simulator: at most 3 packets in a row lost per
      # direction (and see idle_opts for the timeouts handshakeloss needs)
      local loss=0.02; [ "$case" = handshakeloss ] && { loss=0.3; rounds=5; }
      next_port; cport=$P
      RUST_LOG=info "$SEGUE_LAB" impair --listen "127.0.0.1:$cport" --to "127.0.0.1:$sport" --both "loss=$loss,max_loss_run=3" --seed "$sport" >"$WORK/relay.log" 2>&1 &
      rpid=$!; PIDS+=($rpid); sleep 0.3
      # no relay, no loss: the cell would prove nothing
      kill -0 "$rpid" 2>/dev/null || { log "  the loss relay did not start:"; cat "$WORK/relay.log" >&2; echo fail; return; }
      ;;
  esac
  local r
  for r in $(seq 1 $rounds); do
    dl="$WORK/dl-$sport-$r"
    mkdir -p "$dl"
    if ! run_client "$client" "$case" "$cport" "$dl" || ! verify_files "$dl" $(files_of "$case"); then
      ok=0; break
    fi
  done
  if [ $ok = 1 ]; then
    case $case in
      chacha20)
        # ours offers only ChaCha20 (a TLS 1.3 server must pick it); aioquic and ngtcp2 say
        # what they got
        case $client in
          aioquic-*) grep -q 'cipher CHACHA20_POLY1305_SHA256' "$WORK/client.log" || ok=0 ;;
          ngtcp2) grep -q 'Negotiated cipher suite is CHACHA20-POLY1305' "$WORK/client.log" || ok=0 ;;
        esac ;;
      retry)
        # ours logs each Retry; aioquic (retry=True) and ngtcp2 (--validate-addr) always send one
        [ "$server" = ours ] && { grep -q 'Retry sent' "$WORK/server.log" || ok=0; } ;;
      resumption)
        # the second connection resumed: aioquic says so, as client or as server; our
        # server found the client's ticket; our client's second handshake had no
        # certificate to verify (see server/src/node/resumption.rs)
        case $client in
          aioquic-*) grep -q 'resumed True' "$WORK/client.log" || ok=0 ;;
          ours-*) logged "$WORK/client.log" 'TLS session resumed=true' || ok=0 ;;
        esac
        case $server in
          aioquic-*) grep -q 'connection resumed True' "$WORK/server.log" || ok=0 ;;
          ours) logged "$WORK/server.log" 'TLS session resumed' || ok=0 ;;
        esac ;;
      zerortt)
        # the server took the second connection's requests as 0-RTT data: aioquic's server
        # says so, our server got them before the handshake completed, our client's 0-RTT
        # requests were accepted, aioquic's client says so, and ngtcp2's client sent its
        # requests in 0-RTT packets and did not see them rejected
        case $server in
          aioquic-*) grep -q 'connection resumed True early data True' "$WORK/server.log" || ok=0 ;;
          ours) logged "$WORK/server.log" '0-RTT: requests received before the handshake completed' || ok=0 ;;
        esac
        case $client in
          ours-*) logged "$WORK/client.log" '0-RTT requests accepted=true' || ok=0 ;;
          aioquic-*) grep -q 'early data accepted True' "$WORK/client.log" || ok=0 ;;
          ngtcp2) { grep -q 'frm tx .* 0RTT STREAM' "$WORK/client.log" && ! grep -q 'Early data was rejected' "$WORK/client.log"; } || ok=0 ;;
        esac ;;
      keyupdate)
        # after the update, packets under key phase 1: the requests (aioquic server), the
        # answers (aioquic client), or in ngtcp2's packet log (received with k=1)
        case $server/$client in
          */aioquic-*) grep -q 'answers under key phase 1' "$WORK/client.log" || ok=0 ;;
          */ngtcp2) grep -q 'pkt rx .*type=1RTT k=1' "$WORK/client.log" || ok=0 ;;
          aioquic-*/*) grep -q 'request under key phase 1' "$WORK/server.log" || ok=0 ;;
          ngtcp2/*) grep -q 'pkt rx .*type=1RTT k=1' "$WORK/server.log" || ok=0 ;;
          *) ok=0 ;;
        esac ;;
    esac
  fi
  kill "$spid" ${rpid:+"$rpid"} 2>/dev/null; wait "$spid" ${rpid:+"$rpid"} 2>/dev/null
  if [ -n "$rpid" ] && [ $ok = 1 ]; then
    # the relay's closing counters: packets were lost (in either direction)
    grep 'relay stopped' "$WORK/relay.log" | sed 's/\x1b\[[0-9;]*m//g' | grep -Eq '(up|down)_lost=[1-9]' || { log "  no packet was lost"; ok=0; }
  fi
  if [ $ok = 1 ]; then echo pass; else
    # their last lines, without backtrace frames (indented)
    log "  $server x $client $case failed:"
    local f; for f in client server; do log "  $f:"; grep -v '^[[:space:]]' "$WORK/$f.log" | tail -n 4 >&2; done
    echo fail
  fi
}

CASES=(handshake transfer multiplexing chacha20 retry transferloss handshakeloss resumption zerortt keyupdate)
# server, client pairs: ours against each peer, each peer against ours.
PAIRS=(
  "ours aioquic-hq" "ours aioquic-h3" "ours ngtcp2"
  "aioquic-hq ours-hq" "aioquic-h3 ours-h3" "ngtcp2 ours-h3"
)
server_name() { case $1 in ours) echo "segue";; aioquic-hq) echo "aioquic (hq-interop)";; aioquic-h3) echo "aioquic (h3)";; ngtcp2) echo "ngtcp2 (h3)";; esac; }
client_name() { case $1 in ours-hq) echo "segue (hq-interop)";; ours-h3) echo "segue (h3)";; *) server_name "$1";; esac; }

{
  echo "Interop matrix, $(date -u +%Y-%m-%d), segue $("$SEGUE" --version 2>/dev/null | awk '{print $2}'), aioquic $("$PY" -c 'import aioquic; print(aioquic.__version__)' 2>/dev/null || echo '-'), ngtcp2 $(dpkg-query -W -f '${Version}' ngtcp2-client 2>/dev/null || echo '-')"
  echo
  printf '| server | client |'; for c in "${CASES[@]}"; do printf ' %s |' "$c"; done; echo
  printf '| --- | --- |'; for _ in "${CASES[@]}"; do printf ' --- |'; done; echo
} >"$WORK/table"
failed=0
for pair in "${PAIRS[@]}"; do
  read -r server client <<<"$pair"
  row="| $(server_name "$server") | $(client_name "$client") |"
  for c in "${CASES[@]}"; do
    log "$server x $client: $c"
    PORT=$((PORT + 3))  # cell runs in a subshell: its ports do not advance ours
    r=$(cell "$server" "$client" "$c")
    [ "$r" = fail ] && failed=1
    row="$row $r |"
  done
  echo "$row" >>"$WORK/table"
done
# --- Segue's media path: a `segue origin` and a `segue edge` (processes), clients of other
# stacks through the edge: HTTP/3 and hq-interop downloads of the original media files
# (PROTOCOL.md §8.9) and the independent segue/1 player (interop/segue_player.py).
MEDIA="$WORK/media"
mkdir -p "$MEDIA"
cp "$ROOT/media/samples/hd.mp4" "$ROOT/media/samples/demo.mp4" "$MEDIA/"
cp "$ROOT/media/samples/demo.ts" "$MEDIA/tsdemo.ts"
next_port; OPORT=$P
RUST_LOG=info "$SEGUE" origin --media "$MEDIA" --data "$WORK/origin-data" --listen "127.0.0.1:$OPORT" \
  --cert "$CERT" --key "$KEY" --ca "$CA" >"$WORK/origin.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 50); do grep -q 'origin serving' "$WORK/origin.log" && break; sleep 0.2; done

# A fresh edge (empty cache) of that origin: EPORT (segue/1), FPORT (files), APORT (admin);
# EDGE_EXTRA: more flags.
EDGE_EXTRA=()
start_edge() {
  next_port; EPORT=$P; next_port; FPORT=$P; next_port; APORT=$P
  RUST_LOG=info SEGUE_ADMIN_TOKEN=interop "$SEGUE" edge --origin "segue://localhost:$OPORT/" --ca "$CA" \
    --cache-dir "$WORK/edge-$EPORT" --listen "127.0.0.1:$EPORT" --files-listen "127.0.0.1:$FPORT" \
    --admin "127.0.0.1:$APORT" --cert "$CERT" --key "$KEY" "${EDGE_EXTRA[@]}" >"$WORK/edge.log" 2>&1 &
  EDGE_PID=$!; PIDS+=($EDGE_PID)
  for _ in $(seq 1 50); do grep -q 'edge serving' "$WORK/edge.log" && break; sleep 0.2; done
}
# A counter of the edge's /metrics (sum over labels).
metric() {
  python3 - "$APORT" "$1" <<'PY'
import sys, urllib.request
req = urllib.request.Request(f"http://127.0.0.1:{sys.argv[1]}/metrics", headers={"Authorization": "Bearer interop"})
text = urllib.request.urlopen(req, timeout=5).read().decode()
print(int(sum(float(l.split()[-1]) for l in text.splitlines() if l.startswith(sys.argv[2]))))
PY
}
hits() { echo $(( $(metric segue_edge_full_hits_total) + $(metric segue_edge_prefix_hits_total) )); }

# Downloads the edge's files with client $1 into $2 ($3: a Range value).
edge_get() {
  local who=$1 dl=$2 range=${3:-} urls=("https://localhost:$FPORT/hd.mp4" "https://localhost:$FPORT/tsdemo.ts")
  mkdir -p "$dl"
  case $who in
    ours-h3) timeout 60 "$SEGUE_LAB" hq get --ca "$CA" --downloads "$dl" --http3 ${range:+--range "$range"} "${urls[@]}" ;;
    aioquic-hq) timeout 60 "$PY" "$AIOQUIC" client --ca "$CA" --downloads "$dl" "${urls[@]}" ;;
    aioquic-h3) timeout 60 "$PY" "$AIOQUIC" client --ca "$CA" --downloads "$dl" --h3 ${range:+--range "$range"} "${urls[@]}" ;;
    ngtcp2) timeout 60 gtlsclient --quiet --exit-on-all-streams-close --download "$dl" localhost "$FPORT" "${urls[@]}" ;;
  esac >/dev/null 2>"$WORK/client.log"
}
same_media() {
  cmp -s "$MEDIA/hd.mp4" "$1/hd.mp4" && cmp -s "$MEDIA/tsdemo.ts" "$1/tsdemo.ts" || { log "  downloads differ from the media files"; return 1; }
}
player() { timeout 120 "$PY" "$ROOT/interop/segue_player.py" --ca "$CA" "$@" >"$WORK/client.log" 2>&1 && grep -q 'verified: every track matches' "$WORK/client.log"; }

# One row: client $1. Cells: cold (empty edge cache: a miss per object, fetched from the
# origin while it is served), warm (the same again: cache hits), range (bytes 300000-700000
# of hd.mp4, which spans segments).
media_row() {
  local who=$1 cold=fail warm=fail range=n/a dl
  start_edge
  if [ "$who" = segue-player ]; then
    # cold: a real-time play of demo; warm: the same, unpaced
    player "segue://localhost:$EPORT/demo" && [ "$(metric segue_edge_misses_total)" = 1 ] && cold=pass
    player --fast "segue://localhost:$EPORT/demo" && [ "$(hits)" = 1 ] && warm=pass
  else
    dl="$WORK/media-$who-cold"
    edge_get "$who" "$dl" && same_media "$dl" && [ "$(metric segue_edge_misses_total)" = 2 ] && cold=pass
    dl="$WORK/media-$who-warm"
    edge_get "$who" "$dl" && same_media "$dl" && [ "$(hits)" = 2 ] && warm=pass
    case $who in
      ours-h3|aioquic-h3)
        range=fail; dl="$WORK/media-$who-range"
        edge_get "$who" "$dl" bytes=300000-700000 \
          && [ "$(stat -c %s "$dl/hd.mp4")" = 400001 ] \
          && cmp -s -i 300000:0 -n 400001 "$MEDIA/hd.mp4" "$dl/hd.mp4" && range=pass ;;
      *) range=unsupported ;;  # hq-interop has no headers; ngtcp2's example client sends none
    esac
  fi
  kill "$EDGE_PID" 2>/dev/null; wait "$EDGE_PID" 2>/dev/null
  for r in $cold $warm $range; do
    [ "$r" = fail ] && { log "  edge x $who failed:"; tail -n 3 "$WORK/client.log" "$WORK/edge.log" >&2; }
  done
  echo "$cold $warm $range"
}
# Signed URLs (docs/SECURITY.md) with the independent player: an edge with --token-key-file
# refuses it without a grant (401) and plays it, verified, with a URL `segue token` signed.
signed_cell() {
  local r=fail url
  printf 'interop-signing-key-0123456789\n' >"$WORK/token-keys"
  EDGE_EXTRA=(--token-key-file "$WORK/token-keys")
  start_edge
  url=$("$SEGUE" token --key-file "$WORK/token-keys" "segue://localhost:$EPORT/demo")
  if ! player --fast "segue://localhost:$EPORT/demo" && grep -q 'error: request 1: 401' "$WORK/client.log"; then
    player --fast "$url" && r=pass
  fi
  kill "$EDGE_PID" 2>/dev/null; wait "$EDGE_PID" 2>/dev/null
  [ "$r" = fail ] && { log "  signed URLs x segue-player failed:"; tail -n 3 "$WORK/client.log" "$WORK/edge.log" >&2; }
  echo "$r"
}
{
  echo
  echo "Segue's media path: \`segue origin\` → \`segue edge\` (processes) → clients of other stacks"
  echo
  echo "| edge serving | client | cold edge | warm edge | range |"
  echo "| --- | --- | --- | --- | --- |"
} >>"$WORK/table"
for who in aioquic-hq aioquic-h3 ngtcp2 ours-h3 segue-player; do
  log "edge x $who"
  PORT=$((PORT + 10))  # media_row runs in a subshell: its ports do not advance ours
  read -r cold warm range <<<"$(media_row "$who")"
  for r in $cold $warm $range; do [ "$r" = fail ] && failed=1; done
  case $who in
    segue-player) row="| segue/1 | segue_player.py (aioquic, from PROTOCOL.md) |" ;;
    ours-h3) row="| files (HTTP/3) | segue (h3) |" ;;
    aioquic-hq) row="| files (hq-interop) | $(client_name "$who") |" ;;
    *) row="| files (HTTP/3) | $(client_name "$who") |" ;;
  esac
  echo "$row $cold | $warm | $range |" >>"$WORK/table"
done
log "edge (signed URLs) x segue-player"
PORT=$((PORT + 10))
signed=$(signed_cell)
[ "$signed" = fail ] && failed=1
echo "| segue/1, signed URLs (\`--token-key-file\`) | segue_player.py | $signed | n/a | n/a |" >>"$WORK/table"

# --- Captures: tshark decrypts Segue's QUIC with the secrets its SSLKEYLOGFILE collected
# (one side's file is enough), and nothing without them.
# Captures UDP port $1 into $2 while the rest of the arguments run.
capture() {
  local port=$1 pcap=$2; shift 2
  tshark -i lo -f "udp port $port" -w "$pcap" >"$WORK/tshark.log" 2>&1 &
  local tpid=$!
  for _ in $(seq 1 50); do grep -q 'Capturing on' "$WORK/tshark.log" && break; sleep 0.1; done
  # tshark says "Capturing on" before packets are captured: a capture that missed the first
  # Initial cannot be decrypted (the key log is found by the ClientHello's random). Probe
  # datagrams until one is in the file (the server drops them; they are not QUIC).
  for _ in $(seq 1 50); do
    echo probe >"/dev/udp/127.0.0.1/$port"
    sleep 0.1
    [ "$(tshark -r "$pcap" 2>/dev/null | wc -l)" -gt 0 ] && break
  done
  "$@"
  sleep 0.5; kill "$tpid" 2>/dev/null; wait "$tpid" 2>/dev/null
}
# pass when tshark finds packets matching filter $3 in capture $1 with key log $2, and none
# (no QUIC stream data at all) without it.
decrypted() {
  local pcap=$1 keys=$2 filter=$3
  [ -s "$keys" ] || { log "  no key log written"; return 1; }
  [ "$(tshark -r "$pcap" -Y quic.stream_data 2>/dev/null | wc -l)" = 0 ] || { log "  stream data readable without keys?"; return 1; }
  [ "$(tshark -r "$pcap" -o "tls.keylog_file:$keys" -Y "$filter" 2>/dev/null | wc -l)" -gt 0 ]
}
# Whether text $3 is in the QUIC stream data tshark decrypts from capture $1 with key log $2
# (no `grep -q` in a pipeline: with pipefail, tshark's SIGPIPE would fail it).
stream_has() {
  local data hex
  data=$(tshark -r "$1" -o "tls.keylog_file:$2" -Y quic.stream_data -T fields -e quic.stream_data 2>/dev/null | tr -d ',')
  hex=$(printf '%s' "$3" | od -An -tx1 | tr -d ' \n')
  [[ $data == *"$hex"* ]]
}
capture_row() {
  local what=$1 r=fail pcap="$WORK/$1.pcapng" keys="$WORK/$1.keys"
  if ! command -v tshark >/dev/null 2>&1; then echo unsupported; return; fi
  case $what in
    hq|h3)
      next_port; local port=$P h3=()
      [ "$what" = h3 ] && h3=(--http3)
      # hq: the client's key log; h3: the server's
      if [ "$what" = hq ]; then
        "$SEGUE" hq serve --www "$WWW" --listen "127.0.0.1:$port" --cert "$CERT" --key "$KEY" >"$WORK/server.log" 2>&1 &
      else
        SSLKEYLOGFILE="$keys" "$SEGUE" hq serve --www "$WWW" --listen "127.0.0.1:$port" --cert "$CERT" --key "$KEY" >"$WORK/server.log" 2>&1 &
      fi
      local spid=$!; sleep 0.5
      local ckeys=/dev/null; [ "$what" = hq ] && ckeys=$keys
      capture "$port" "$pcap" env SSLKEYLOGFILE="$ckeys" "$SEGUE_LAB" hq get --ca "$CA" --downloads "$WORK/dl-capture-$what" "${h3[@]}" "https://localhost:$port/small.bin" >/dev/null 2>"$WORK/client.log"
      kill "$spid" 2>/dev/null; wait "$spid" 2>/dev/null
      if [ "$what" = hq ]; then
        stream_has "$pcap" "$keys" 'GET /small.bin' && decrypted "$pcap" "$keys" quic.stream_data && r=pass
      else
        decrypted "$pcap" "$keys" 'http3.frame_type == 0x01' && r=pass
      fi ;;
    segue1)
      # the edge's key log; the player is segue_player.py
      EDGE_EXTRA=()
      export SSLKEYLOGFILE="$keys"  # (this row runs in a subshell)
      start_edge
      unset SSLKEYLOGFILE
      capture "$EPORT" "$pcap" player --fast "segue://localhost:$EPORT/demo"
      kill "$EDGE_PID" 2>/dev/null; wait "$EDGE_PID" 2>/dev/null
      stream_has "$pcap" "$keys" 'DESCRIBE segue://' && decrypted "$pcap" "$keys" quic.stream_data && r=pass ;;
  esac
  [ "$r" = fail ] && { log "  capture $what failed:"; tail -n 3 "$WORK/tshark.log" "$WORK/client.log" >&2; }
  echo "$r"
}
{
  echo
  echo "Captures decrypted by tshark $(tshark --version 2>/dev/null | head -1 | awk '{print $3}') with the secrets of Segue's \`SSLKEYLOGFILE\`"
  echo
  echo "| traffic | key log of | decrypted |"
  echo "| --- | --- | --- |"
} >>"$WORK/table"
for what in hq h3 segue1; do
  log "capture $what"
  PORT=$((PORT + 10))
  r=$(capture_row "$what")
  [ "$r" = fail ] && failed=1
  case $what in
    hq) row="| hq-interop: \`segue-lab hq get\` → \`segue hq serve\` | the client | $r |" ;;
    h3) row="| HTTP/3: \`segue-lab hq get --http3\` → \`segue hq serve\` | the server | $r |" ;;
    segue1) row="| segue/1: segue_player.py → \`segue edge\` | the edge | $r |" ;;
  esac
  echo "$row" >>"$WORK/table"
done

{
  cat "$WORK/table"
  echo
  echo "Media path: files are hd.mp4 and tsdemo.ts downloaded from the edge (\`--files-listen\`) and byte-compared with the origin's media files; cold: through a fresh edge whose /metrics count a miss per object; warm: again, counted as cache hits; range: bytes=300000-700000 of hd.mp4 (across segments), compared with that slice; segue/1: interop/segue_player.py plays \`demo\` (real time when cold, unpaced when warm) and verifies every track's frame count and content hash against the manifest; signed URLs: the same player is refused (401) by an edge requiring grants when its URL has none, and plays (verified) the URL \`segue token\` signed. Captures: tshark reads no QUIC stream data from a capture without a key log, and with one side's finds the request line (hq-interop), HTTP/3 HEADERS frames, or the player's DESCRIBE (segue/1)."
  echo
  echo "pass: the files downloaded equal the server's, and for chacha20 the cipher, for retry the Retry, for resumption the resumed session, for keyupdate the new key phase, for zerortt the early data accepted, as verified (by each side that reports it: aioquic either way; our server finds the client's ticket and sees the requests arrive before the handshake completes; our client's resumed handshake has no certificate to verify and its 0-RTT requests are accepted; ngtcp2's client sends its requests in 0-RTT packets and does not see them rejected); unsupported (media path): the client cannot send a Range header (hq-interop has none; ngtcp2's example client sends none). Loss cases go through \`segue-lab impair\`: transferloss 2 % and handshakeloss 30 % (five connections, one after the other) of the packets lost each way, at most 3 in a row, as in the quic-interop-runner's simulator; they pass only if packets were lost. In handshakeloss every endpoint runs with a 120 s idle and handshake timeout and each client run may take 150 s (a lost Finished can take 40 s and more to get through: see \`idle_opts\` in run.sh)."
} | tee "$OUT"
exit $failed
