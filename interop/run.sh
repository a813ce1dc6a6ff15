#!/usr/bin/env bash
# The interop matrix: Segue's QUIC endpoints (segue hq serve|get: hq-interop and HTTP/3)
# against other stacks, every cell passing only on a verified outcome (downloaded files
# byte-compared with what the server holds, the negotiated cipher, a Retry seen).
#
#   interop/run.sh [--out FILE]      (default: interop/results.md)
#
# Installs its peers on a fresh Debian machine: aioquic from PyPI into target/interop-venv,
# ngtcp2's example client and server (Debian ngtcp2-client, ngtcp2-server) with apt when run
# as root. Peers: aioquic over hq-interop and over HTTP/3, ngtcp2 over HTTP/3 (Debian's
# ngtcp2 ships HTTP/3 examples only). Loss cases run through `segue lab impair`.
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT="$ROOT/interop/results.md"
[ "${1:-}" = "--out" ] && OUT=$2

log() { printf '%s\n' "$*" >&2; }

# --- peers and our binary ---------------------------------------------------------------
if ! command -v gtlsclient >/dev/null 2>&1 || ! { command -v gtlsserver >/dev/null 2>&1 || [ -x /usr/sbin/gtlsserver ]; }; then
  if [ "$(id -u)" = 0 ]; then
    log "installing ngtcp2-client ngtcp2-server"
    apt-get update -qq && apt-get install -y -qq --no-install-recommends ngtcp2-client ngtcp2-server >/dev/null
  fi
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
next_port() { PORT=$((PORT + 1)); echo "$PORT"; }

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

# Starts a server ($1 = ours|aioquic-hq|aioquic-h3|ngtcp2) for case $2 on port $3; its log
# goes to $WORK/server.log.
start_server() {
  local who=$1 case=$2 port=$3 retry=()
  case $who in
    ours)
      [ "$case" = retry ] && retry=(--retry)
      RUST_LOG=info "$SEGUE" hq serve --www "$WWW" --listen "127.0.0.1:$port" --cert "$CERT" --key "$KEY" "${retry[@]}" >"$WORK/server.log" 2>&1 &
      ;;
    aioquic-hq|aioquic-h3)
      [ "$case" = retry ] && retry=(--retry)
      local h3=(); [ "$who" = aioquic-h3 ] && h3=(--h3)
      "$PY" "$AIOQUIC" server --www "$WWW" --cert "$CERT" --key "$KEY" --port "$port" "${h3[@]}" "${retry[@]}" >"$WORK/server.log" 2>&1 &
      ;;
    ngtcp2)
      [ "$case" = retry ] && retry=(--validate-addr)
      "$GTLSSERVER" --quiet -d "$WWW" "${retry[@]}" 127.0.0.1 "$port" "$KEY" "$CERT" >"$WORK/server.log" 2>&1 &
      ;;
  esac
  PIDS+=($!)
  sleep 0.7
}

# Runs a client ($1 = ours-hq|ours-h3|aioquic-hq|aioquic-h3|ngtcp2) for case $2 against
# port $3, downloading into $4.
run_client() {
  local who=$1 case=$2 port=$3 dl=$4 urls=() f
  for f in $(files_of "$case"); do urls+=("https://localhost:$port/$f"); done
  local chacha=()
  [ "$case" = resumption ] && chacha=(--resumption)
  [ "$case" = keyupdate ] && chacha=(--key-update)
  [ "$case" = zerortt ] && chacha=(--zero-rtt)
  case $who in
    ours-hq|ours-h3)
      [ "$case" = chacha20 ] && chacha=(--chacha20)
      local h3=(); [ "$who" = ours-h3 ] && h3=(--http3)
      timeout 60 "$SEGUE" hq get --ca "$CA" --downloads "$dl" "${h3[@]}" "${chacha[@]}" "${urls[@]}" >/dev/null 2>"$WORK/client.log"
      ;;
    aioquic-hq|aioquic-h3)
      [ "$case" = chacha20 ] && chacha=(--chacha20)
      local h3=(); [ "$who" = aioquic-h3 ] && h3=(--h3)
      timeout 60 "$PY" "$AIOQUIC" client --ca "$CA" --downloads "$dl" "${h3[@]}" "${chacha[@]}" "${urls[@]}" >/dev/null 2>"$WORK/client.log"
      ;;
    ngtcp2)
      timeout 60 gtlsclient --quiet --exit-on-all-streams-close --download "$dl" localhost "$port" "${urls[@]}" >/dev/null 2>"$WORK/client.log"
      ;;
  esac
}

# What a cell does not support: ngtcp2's example client names ciphers as GnuTLS priorities;
# resumption, 0-RTT and key updates are verified by aioquic's report (quinn exposes none of
# them, ngtcp2's examples are not wired for it here); aioquic_peer.py's own 0-RTT client
# does not work yet (its early requests are never answered, even by aioquic's server).
unsupported() {
  local server=$1 client=$2 case=$3
  [ "$client" = ngtcp2 ] && [ "$case" = chacha20 ] && return 0
  case $case in resumption|keyupdate|zerortt)
    { [ "$client" = ngtcp2 ] || [ "$server" = ngtcp2 ]; } && return 0 ;;
  esac
  [ "$case" = zerortt ] && [ "${client#aioquic}" != "$client" ] && return 0
  return 1
}

# One cell: server $1, client $2, case $3. Prints pass, fail or unsupported.
cell() {
  local server=$1 client=$2 case=$3
  if unsupported "$server" "$client" "$case"; then echo unsupported; return; fi
  local sport cport dl rounds=1 ok=1
  sport=$(next_port)
  cport=$sport
  start_server "$server" "$case" "$sport"
  local spid=${PIDS[-1]} rpid=
  case $case in
    transferloss|handshakeloss)
      local loss=0.02; [ "$case" = handshakeloss ] && { loss=0.3; rounds=5; }
      cport=$(next_port)
      "$SEGUE" lab impair --listen "127.0.0.1:$cport" --to "127.0.0.1:$sport" --both "loss=$loss" --seed "$sport" >/dev/null 2>&1 &
      rpid=$!; PIDS+=($rpid); sleep 0.3
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
        # ours offers only ChaCha20 (a TLS 1.3 server must pick it); aioquic says what it got
        case $client in aioquic-*) grep -q 'cipher CHACHA20_POLY1305_SHA256' "$WORK/client.log" || ok=0 ;; esac ;;
      retry)
        # ours logs each Retry; aioquic (retry=True) and ngtcp2 (--validate-addr) always send one
        [ "$server" = ours ] && { grep -q 'Retry sent' "$WORK/server.log" || ok=0; } ;;
      resumption)
        # the second connection resumed: aioquic says so, as client or as server
        case $client in
          aioquic-*) grep -q 'resumed True' "$WORK/client.log" || ok=0 ;;
          *) grep -q 'connection resumed True' "$WORK/server.log" || ok=0 ;;
        esac ;;
      zerortt)
        # aioquic's server took our second connection's requests as 0-RTT data
        grep -q 'connection resumed True early data True' "$WORK/server.log" || ok=0 ;;
      keyupdate)
        # the requests (aioquic server) or the answers (aioquic client) came under key phase 1
        case $client in
          aioquic-*) grep -q 'answers under key phase 1' "$WORK/client.log" || ok=0 ;;
          *) grep -q 'request under key phase 1' "$WORK/server.log" || ok=0 ;;
        esac ;;
    esac
  fi
  kill "$spid" ${rpid:+"$rpid"} 2>/dev/null; wait "$spid" ${rpid:+"$rpid"} 2>/dev/null
  if [ $ok = 1 ]; then echo pass; else
    log "  $server x $client $case failed:"; tail -n 3 "$WORK/client.log" "$WORK/server.log" >&2
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
    r=$(cell "$server" "$client" "$c")
    [ "$r" = fail ] && failed=1
    row="$row $r |"
  done
  echo "$row" >>"$WORK/table"
done
{
  cat "$WORK/table"
  echo
  echo "pass: the files downloaded equal the server's, and for chacha20 the cipher, for retry the Retry, for resumption the resumed session, for keyupdate the new key phase, for zerortt the early data accepted, as verified; unsupported: not verifiable with the peer's example tools here (ngtcp2: chacha20 as a client, resumption, zerortt, keyupdate), or our aioquic 0-RTT client, which does not work yet."
} | tee "$OUT"
exit $failed
