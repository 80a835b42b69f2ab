#!/usr/bin/env bash
# nib benchmark: the figures issues 2 to 4 ask for, and the hostile-client figures of the
# issue "no single connection, post file or header can freeze, bloat or crash nib",
# measured on this machine.
#
#   bash bench/run.sh [--quick] [PART...]
#
# With no PART, every part runs. A PART is one of the letters a-f below (several may
# be run together: "ae") or one of the names headroom, slow, fairness, flood; e.g.
# `bash bench/run.sh slow` or `bash bench/run.sh --quick headroom flood`.
# --quick shortens the runs (BENCH_SECONDS=3 unless set, 3 fairness runs) to check the
# bench itself; its figures are not the ones to quote.
#
# Environment:
#   BENCH_SECONDS  length of each wrk run (default 10)
#   BENCH_POSTS    posts in the generated site (default 10000)
#   BENCH_KEEP=1   keep the temporary directory (site, configs, logs) and print its path
#   BENCH_NIB=PATH bench this nib binary instead of building one (e.g. to compare builds)
#   BENCH_ROUNDS   rounds of the alternating runs in part c (default 3; medians reported)
#   BENCH_FAIR_RUNS runs in part fairness (default 10)
#   BENCH_PARTS    the parts, as on the command line (default: all); a always runs,
#                  since the others use its database, and c needs b (e.g. BENCH_PARTS=ae
#                  re-runs the short-link figures alone)
#
# Everything runs against 127.0.0.1 on free ports, from a temporary directory; every
# process the script starts is stopped when it exits, however it exits. It installs wrk
# and nginx-light with apt-get when they are missing (that part needs root).
#
# What it measures (see issues 2 and 3 for the targets):
#   a. cold start: launch on a fresh database until GET / answers 200; then 100,000
#      short links go into the database (bench/load-links.py), for every later part
#   b. memory: VmHWM / VmRSS / threads after wrk mixed-page runs, direct and via nginx
#   c. post page requests/s against nginx baselines, nginx with one worker
#   d. binary size and linkage
#   e. short links: redirect requests/s against nginx's `return 302`; peak RSS under
#      wrk at random codes of the 100,000, the API list and a preview page once each,
#      and where the memory is (binary, heap, stacks)
#   f. process life (issue 4): 5 SIGHUPs under wrk -t2 -c4 keep-alive, direct and via
#      nginx (requests, errors, same PID, 6 "nib: serving" lines); 400 idle/half-sent
#      sockets plus 100 KB headers and 100 MB bodies at nginx while wrk reads pages
#      (nib's memory, threads, fds; page latency); 100 idle/half-sent sockets straight
#      at nib until its guard closes them (bench/hostile.py)
#   headroom: nib's VmHWM after the mixed load (every kind of page, feed, sitemap and
#      short link; wrk -t2 -c8, Connection: close), three runs on a fresh nib each
#      (target <= 3.3 MB every run)
#   slow: 50 clients GET an 8 MB static file with a 4 KB receive buffer and never read,
#      20 send half a POST body, for 15 s, while 4 other clients GET post pages for
#      10 s (bench/slow.py): their p99, nib's VmHWM, and whether nib's threads and fds
#      return to where they were; direct and via nginx (target p99 < 50 ms,
#      VmHWM < 4 MB, threads and fds back)
#   fairness: ten wrk -t2 -c32 keep-alive runs on one short link, one after the other
#      on one nib: each run's requests/s, the median, min / median (target >= 0.8)
#   flood: 6 connections each stream one endless header line for 10 s (nib's RSS
#      growth, target < 1 MB), and one request with 5,000 short headers (the status,
#      target 431) (bench/flood.py)
# and ends with a Markdown table of every figure, ready to paste into a note.
set -euo pipefail

ALL_PARTS="abcdef headroom slow fairness flood"
QUICK=0
ARGS=()
for arg in "$@"; do
  case $arg in
    --quick) QUICK=1 ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    -*) echo "run.sh: unknown option $arg (see --help)" >&2; exit 2 ;;
    *) ARGS+=("$arg") ;;
  esac
done
if ((${#ARGS[@]})); then BENCH_PARTS="${ARGS[*]}"; fi

if [[ $QUICK == 1 ]]; then
  BENCH_SECONDS=${BENCH_SECONDS:-3}
  BENCH_FAIR_RUNS=${BENCH_FAIR_RUNS:-3}
fi
BENCH_SECONDS=${BENCH_SECONDS:-10}
BENCH_POSTS=${BENCH_POSTS:-10000}
BENCH_KEEP=${BENCH_KEEP:-0}
BENCH_NIB=${BENCH_NIB:-}
BENCH_PARTS=${BENCH_PARTS:-$ALL_PARTS}
BENCH_ROUNDS=${BENCH_ROUNDS:-3}
BENCH_FAIR_RUNS=${BENCH_FAIR_RUNS:-10}

# The parts asked for, one a word: "ae slow" -> a e slow.
PART_LIST=()
for word in ${BENCH_PARTS//,/ }; do
  if [[ $word =~ ^[a-f]+$ ]]; then
    for ((i = 0; i < ${#word}; i++)); do PART_LIST+=("${word:i:1}"); done
  elif [[ " headroom slow fairness flood " == *" $word "* ]]; then
    PART_LIST+=("$word")
  else
    echo "run.sh: unknown part '$word' (parts: a-f, headroom, slow, fairness, flood)" >&2
    exit 2
  fi
done

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/nib-bench.XXXXXX")
SITE=$WORK/site
PIDS=()          # every background process started, stopped by cleanup
SUMMARY=()       # "figure|value|target" rows for the final table

# ---------------------------------------------------------------- plumbing

die() { echo "run.sh: $*" >&2; exit 1; }
section() { printf '\n== %s\n' "$*"; }
row() { SUMMARY+=("$1|$2|${3:-}"); }
now_us() { echo "${EPOCHREALTIME/./}"; }   # bash 5: no fork, so polling stays cheap

# Stop one process we started: TERM, up to 5 s to finish (nib drains requests in
# flight), then KILL; then drop it from PIDS, so a reused PID is never signalled later.
stop() {
  local pid=$1 i kept=()
  if kill -TERM "$pid" 2>/dev/null; then
    for ((i = 0; i < 50; i++)); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
  for i in "${PIDS[@]}"; do [[ $i == "$pid" ]] || kept+=("$i"); done
  PIDS=("${kept[@]}")
}

cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do stop "$pid"; done
  if [[ $BENCH_KEEP == 1 ]]; then
    echo "kept: $WORK"
  else
    rm -rf "$WORK"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM   # turn signals into a normal exit so cleanup runs

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Wait until URL answers 200 (polling every 20 ms), failing if PID dies or after
# TIMEOUT seconds.
wait_200() {
  local url=$1 pid=$2 timeout=$3 deadline
  deadline=$(($(now_us) + timeout * 1000000))
  until [[ $(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "$url") == 200 ]]; do
    kill -0 "$pid" 2>/dev/null || return 1
    (($(now_us) < deadline)) || return 1
    sleep 0.02
  done
}

# "VmHWM VmRSS Threads" of PID, memory in kB.
proc_mem() {
  awk '$1 == "VmHWM:" { h = $2 } $1 == "VmRSS:" { r = $2 } $1 == "Threads:" { t = $2 }
       END { print h, r, t }' "/proc/$1/status"
}

# A post's slug from its file name: without .md and the YYYY-MM-DD- prefix.
slug() { local f=${1%.md}; echo "${f#????-??-??-}"; }

part() {
  local p
  for p in "${PART_LIST[@]}"; do [[ $p == "$1" ]] && return 0; done
  return 1
}

mb() { awk -v k="$1" 'BEGIN { printf "%.2f MB", k / 1024 }'; }

# ---------------------------------------------------------------- tools and build

need_tools() {
  local missing=()
  command -v wrk >/dev/null || missing+=(wrk)
  command -v nginx >/dev/null || missing+=(nginx-light)
  command -v curl >/dev/null || missing+=(curl)
  command -v file >/dev/null || missing+=(file)
  command -v python3 >/dev/null || missing+=(python3)
  if ((${#missing[@]})); then
    [[ $EUID == 0 ]] || die "missing ${missing[*]}: install them, or run as root"
    apt-get update
    apt-get install -y "${missing[@]}"
  fi
  command -v cargo >/dev/null || die "cargo not found (https://rustup.rs)"
}

# The bench measures the deploy binary, the static one (`cargo static` on x86-64,
# `cargo static-arm` on aarch64; see .cargo/config.toml). cargo names the executable in
# its JSON messages, wherever CARGO_TARGET_DIR puts it.
build_nib() {
  section "build"
  if [[ -n $BENCH_NIB ]]; then
    NIB=$(realpath "$BENCH_NIB")
    [[ -x $NIB ]] || die "BENCH_NIB=$BENCH_NIB is not an executable"
    echo "  $NIB (BENCH_NIB, not built; benched as a copy, $WORK/nib)"
    cp "$NIB" "$WORK/nib"
    NIB=$WORK/nib
    return
  fi
  local alias=static
  [[ $(uname -m) == aarch64 ]] && alias=static-arm
  (cd "$REPO" && cargo "$alias" --message-format=json-render-diagnostics) >"$WORK/build.json"
  NIB=$(python3 -c '
import json, sys
for line in open(sys.argv[1]):
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "nib" and m.get("executable"):
        print(m["executable"])' "$WORK/build.json" | tail -n 1)
  [[ -x $NIB ]] || die "cargo built no nib executable"
  # Bench a copy: a rebuild in the work tree during the run (someone else's cargo build)
  # must not swap the binary under the later restarts.
  cp "$NIB" "$WORK/nib"
  echo "  $NIB (benched as a copy, $WORK/nib)"
  NIB=$WORK/nib
}

# ---------------------------------------------------------------- nib

NIB_STARTS=0
# Start nib on a fresh port; sets NIB_PID, NIB_PORT, NIB_ERR and START_MS (launch to the
# first 200 on /).
start_nib() {
  local t0
  NIB_STARTS=$((NIB_STARTS + 1))
  NIB_PORT=$(free_port)
  NIB_ERR=$WORK/nib-$NIB_STARTS.err
  t0=$(now_us)
  "$NIB" --root "$SITE" --db "$SITE/nib.db" --listen "127.0.0.1:$NIB_PORT" serve \
    >"$WORK/nib-$NIB_STARTS.out" 2>"$NIB_ERR" &
  NIB_PID=$!
  PIDS+=("$NIB_PID")
  if ! wait_200 "http://127.0.0.1:$NIB_PORT/" "$NIB_PID" 60; then
    tail -n 20 "$NIB_ERR" >&2
    die "nib did not answer 200 on / within 60 s"
  fi
  START_MS=$((($(now_us) - t0) / 1000))
}

# ---------------------------------------------------------------- nginx

USER_LINE=""   # worker user: root's workers must be able to read the 0700 temp dir
[[ $EUID == 0 ]] && USER_LINE="user root;"

# Lines every generated config needs: temp files inside the instance's directory
# (the compiled-in defaults live under /var/lib/nginx).
temp_paths() {
  local dir=$1 t
  for t in client_body proxy fastcgi uwsgi scgi; do
    echo "    ${t}_temp_path $dir/$t;"
  done
}

# Derive a loopback config from deploy/nginx.conf: listen on 127.0.0.1:PORT, proxy to
# 127.0.0.1:UPSTREAM, alias static/ to the generated site, one worker, files in DIR,
# plain HTTP (TLS lines and the 80 -> 443 redirect server dropped). The per-address
# connection cap is lifted because every wrk connection comes from 127.0.0.1. Comments
# are stripped so the leftover check below only looks at directives.
front_conf() {
  local dir=$1 port=$2 upstream=$3 deploy=$REPO/deploy/nginx.conf token
  for token in 'user www-data;' 'worker_processes auto;' 'pid /run/nginx.pid;' \
    '/var/log/nginx/error.log' '/var/log/nginx/access.log' '127.0.0.1:8080' \
    'limit_conn perip 16;' 'listen 443 ssl' '/srv/nib/static/' '# tls' \
    '# BEGIN http-redirect' '# END http-redirect'; do
    grep -qF -- "$token" "$deploy" || die "deploy/nginx.conf lost the token '$token' the bench replaces"
  done
  mkdir -p "$dir"
  {
    sed -e '/# BEGIN http-redirect/,/# END http-redirect/d' \
      -e '/# tls$/d' \
      -e 's/[[:space:]]*#.*$//' \
      -e '/^[[:space:]]*$/d' \
      -e "s|^user www-data;|$USER_LINE|" \
      -e 's|^worker_processes auto;|worker_processes 1;|' \
      -e "s|^pid /run/nginx.pid;|pid $dir/nginx.pid;|" \
      -e "s|/var/log/nginx/error.log|$dir/error.log|" \
      -e "s|/var/log/nginx/access.log|$dir/access.log|" \
      -e "s|127.0.0.1:8080|127.0.0.1:$upstream|" \
      -e 's|limit_conn perip 16;|limit_conn perip 1000;|' \
      -e "s|listen 443 ssl[^;]*;|listen 127.0.0.1:$port;|" \
      -e "s|/srv/nib/static/|$SITE/static/|" \
      "$deploy" | awk -v extra="$(temp_paths "$dir")" '{ print } /^http \{/ { print extra }'
  } >"$dir/nginx.conf"
  if grep -nE '/var/log/nginx|/run/nginx|/srv/nib|letsencrypt|ssl|127\.0\.0\.1:8080[^0-9]|listen +(80|443)[^0-9]' "$dir/nginx.conf"; then
    die "$dir/nginx.conf: the lines above escaped the loopback rewrite of deploy/nginx.conf"
  fi
}

# The baseline: one nginx worker serving the saved post bytes from ROOT with nib's
# Content-Type and nosniff header.
origin_conf() {
  local dir=$1 port=$2 root=$3 ctype=$4
  baseline_conf "$dir" "    sendfile on;
    tcp_nopush on;
    server {
        listen 127.0.0.1:$port;
        root $root;
        types { }
        default_type \"$ctype\";
        add_header X-Content-Type-Options nosniff;
    }"
}

# A one-worker nginx for a baseline, its files in DIR: the lines every baseline shares,
# then BODY inside the http block.
baseline_conf() {
  local dir=$1 body=$2
  mkdir -p "$dir"
  cat >"$dir/nginx.conf" <<EOF
$USER_LINE
worker_processes 1;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 1024; }
http {
$(temp_paths "$dir")
    access_log $dir/access.log combined;
    server_tokens off;
$body
}
EOF
}

# Check and start the nginx instance in DIR (config DIR/nginx.conf), in the foreground
# of a background job so its PID is ours to stop; wait until PORT answers.
start_nginx() {
  local dir=$1 port=$2 pid i
  nginx -t -q -p "$dir/" -e "$dir/error.log" -c "$dir/nginx.conf" ||
    die "nginx -t rejected $dir/nginx.conf"
  nginx -p "$dir/" -e "$dir/error.log" -c "$dir/nginx.conf" -g 'daemon off;' &
  pid=$!
  PIDS+=("$pid")
  for ((i = 0; i < 250; i++)); do
    curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$port/" && return
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.02
  done
  cat "$dir/error.log" >&2
  die "nginx in $dir did not start"
}

# ---------------------------------------------------------------- wrk

# Warn about any path that does not answer 200 (302 for a short link), since wrk would
# count it as a non-2xx response rather than fail.
check_paths() {
  local base=$1 path code
  shift
  for path in "$@"; do
    code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$base$path")
    [[ $code == 200 || ($code == 302 && $path =~ ^/[0-9A-Za-z]+$) ]] ||
      echo "  warning: $base$path answers $code"
  done
}

# run_wrk NAME CONNECTIONS URL [wrk args...]: run wrk, keep its output in
# WORK/wrk-NAME.txt, print one line, set RPS. The URL goes before the other arguments
# because wrk takes the first argument left after its options as the URL, and a
# script's arguments follow "--".
run_wrk() {
  local name=$1 conn=$2 url=$3 out=$WORK/wrk-$1.txt p50 p99 errs
  shift 3
  wrk -t2 -c"$conn" -d"${BENCH_SECONDS}s" --latency "$url" "$@" >"$out"
  RPS=$(awk '$1 == "Requests/sec:" { printf "%.0f", $2 }' "$out")
  p50=$(awk '$1 == "50%" { print $2 }' "$out")
  p99=$(awk '$1 == "99%" { print $2 }' "$out")
  errs=$(grep -E 'Socket errors|Non-2xx' "$out" | tr -s ' ' | paste -sd ';' - || true)
  printf '  %-44s %7s req/s  p50 %-8s p99 %-8s%s\n' "$name" "$RPS" "$p50" "$p99" "${errs:+  [$errs]}"
}

# CPU time a process (or, with /task/TID, one thread) has used so far, in µs: utime +
# stime from its stat file. A process's figure includes its threads that have ended.
cpu_us() { awk -v hz="$(getconf CLK_TCK)" '{ printf "%.0f", ($14 + $15) * 1e6 / hz }' "$1"; }

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }'; }
verdict() { awk -v r="$1" 'BEGIN { exit !(r >= 0.8) }' && echo "ok" || echo "BELOW TARGET"; }

# ---------------------------------------------------------------- a. cold start

bench_cold_start() {
  local scan hwm rss threads
  section "a. cold start, $BENCH_POSTS posts, fresh database"
  rm -f "$SITE"/nib.db*
  start_nib
  echo "  launch to first 200 on /: $START_MS ms   (target <= 3000 ms)"
  row "cold start to serving, $BENCH_POSTS posts" "$START_MS ms" "<= 3000 ms"
  scan=$(grep -h 'change scan' "$NIB_ERR" "$WORK/nib-$NIB_STARTS.out" | head -n 1 || true)
  echo "  nib says: ${scan:-(no line containing 'change scan' on stderr or stdout)}"
  row "nib's startup line" "${scan:-none}"
  read -r hwm rss threads < <(proc_mem "$NIB_PID")
  echo "  idle after start: VmHWM $(mb "$hwm")  VmRSS $(mb "$rss")  threads $threads"
  row "VmHWM after cold start (indexing)" "$(mb "$hwm")"
}

# ---------------------------------------------------------------- b. memory

# One mixed-page run, then nib's memory. VmHWM is a high-water mark: it covers the
# process's whole life so far, which MEMLABEL says for the summary.
mixed_run() {
  local label=$1 memlabel=$2 conn=$3 url=$4 hwm rss threads
  shift 4
  run_wrk "$label" "$conn" "$url" -s "$REPO/bench/mixed.lua" "$@" -- "${MIXED[@]}"
  read -r hwm rss threads < <(proc_mem "$NIB_PID")
  printf '  %-44s VmHWM %s  VmRSS %s  threads %s\n' "" "$(mb "$hwm")" "$(mb "$rss")" "$threads"
  row "VmHWM, $memlabel" "$(mb "$hwm")" "$([[ $conn == 8 ]] && echo '<= 3.5 MB')"
  row "mixed req/s, $label" "$RPS"
}

# Time each mixed path alone on an idle nib (best of 5 requests), so a slow route
# stands out before the mixed runs average it in.
path_latency() {
  local base=$1 path code size secs slow_path="" slow=0 ms
  shift
  echo "  each path alone (curl, best of 5):"
  for path in "$@"; do
    read -r code size secs < <(
      for ((i = 0; i < 5; i++)); do
        curl -s -o /dev/null --max-time 10 -w '%{http_code} %{size_download} %{time_total}\n' "$base$path"
      done | sort -k3,3g | head -n 1
    )
    ms=$(awk -v s="$secs" 'BEGIN { printf "%.1f", s * 1000 }')
    printf '    %-62s %s %7s bytes %7s ms\n' "$path" "$code" "$size" "$ms"
    if awk -v a="$ms" -v b="$slow" 'BEGIN { exit !(a > b) }'; then
      slow=$ms slow_path=$path
    fi
  done
  row "slowest path alone (best of 5)" "$slow_path $slow ms"
}

# wrk treats an HTTP/1.1 answer without "Connection: close" as keep-alive: it sends the
# next request on the socket the server closed, counts a read error and reconnects.
# Say so when nib's answers lack the header, so the error counts are not misread.
note_close_header() {
  if ! curl -s -D - -o /dev/null -H 'Connection: close' "$1" | grep -qi '^connection: *close'; then
    echo "  warning: nib answered a Connection: close request without that header, so wrk"
    echo "  will take each connection for a persistent one and count a read error per request."
  fi
}

# Restart nib on the database the cold start built, so a load phase's VmHWM covers that
# phase and not the indexing peak (reported under a.).
restart_nib() {
  stop "$NIB_PID"
  start_nib
  echo "  nib restarted (database kept): $START_MS ms to first 200 on /"
}

bench_memory() {
  local direct
  section "b. memory under mixed pages (wrk -t2, ${BENCH_SECONDS}s per run)"
  echo "  paths: ${MIXED[*]}"
  echo "  Each block runs on a freshly restarted nib; VmHWM after -c50 includes its -c8 run."
  restart_nib
  row "warm start to serving (database kept)" "$START_MS ms"
  direct="http://127.0.0.1:$NIB_PORT"
  check_paths "$direct" "${MIXED[@]}"
  path_latency "$direct" "${MIXED[@]}"
  note_close_header "$direct/"
  mixed_run "direct -c8, Connection: close" "direct -c8, Connection: close" \
    8 "$direct" -H "Connection: close"
  mixed_run "direct -c50, Connection: close" "direct -c8 then -c50" \
    50 "$direct" -H "Connection: close"

  restart_nib
  FRONT_PORT=$(free_port)
  front_conf "$WORK/nginx-front" "$FRONT_PORT" "$NIB_PORT"
  start_nginx "$WORK/nginx-front" "$FRONT_PORT"
  check_paths "http://127.0.0.1:$FRONT_PORT" "${MIXED[@]}"
  mixed_run "via nginx -c8, keep-alive to nginx" "via nginx -c8" 8 "http://127.0.0.1:$FRONT_PORT"
  mixed_run "via nginx -c50, keep-alive to nginx" "via nginx -c8 then -c50" \
    50 "http://127.0.0.1:$FRONT_PORT"
}

# ---------------------------------------------------------------- c. post page req/s

# alternate NAME_A URL_A NAME_B URL_B [wrk args...]: runs the two in turn for BENCH_ROUNDS
# rounds with the same wrk arguments; prints every run and sets MED_A, MED_B (median
# req/s) and REQ_A, REQ_B (requests over all runs). Alternating and taking medians keeps a
# slow moment of this shared machine from landing on one side only.
alternate() {
  local name_a=$1 url_a=$2 name_b=$3 url_b=$4 i ra=() rb=()
  shift 4
  REQ_A=0 REQ_B=0
  for ((i = 1; i <= BENCH_ROUNDS; i++)); do
    run_wrk "$name_a, run $i" 8 "$url_a" "$@"
    ra+=("$RPS")
    REQ_A=$((REQ_A + $(wrk_requests "$name_a, run $i")))
    run_wrk "$name_b, run $i" 8 "$url_b" "$@"
    rb+=("$RPS")
    REQ_B=$((REQ_B + $(wrk_requests "$name_b, run $i")))
  done
  MED_A=$(median "${ra[@]}")
  MED_B=$(median "${rb[@]}")
}

median() { printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

bench_post_page() {
  local www=$WORK/origin-www path="/posts/$POST_SLUG/" ctype bytes origin_port static_port nib_front
  local r_a r_b nib_direct nginx_file nib_proxied static_proxied hwm rss threads
  section "c. post page requests/s, nginx with 1 worker (wrk -t2 -c8, ${BENCH_SECONDS}s per run, $BENCH_ROUNDS rounds, medians)"

  # A fresh nib on a fresh port, with a front end of its own. The runs before left tens of
  # thousands of connections to the old port in TIME_WAIT on the server side; a new
  # connection that reuses one of those address pairs costs the server extra work and the
  # client, at worst, a retry, which the baseline on its fresh port would not pay.
  restart_nib
  nib_front=$(free_port)
  front_conf "$WORK/nginx-front-c" "$nib_front" "$NIB_PORT"
  start_nginx "$WORK/nginx-front-c" "$nib_front"

  # nib's bytes for the post, saved where the baseline nginx serves them from disk.
  mkdir -p "$www/posts/$POST_SLUG"
  curl -sf -D "$WORK/post.headers" -o "$www/posts/$POST_SLUG/index.html" \
    "http://127.0.0.1:$NIB_PORT$path" || die "nib does not serve $path"
  ctype=$(sed -n 's/^[Cc]ontent-[Tt]ype: *//p' "$WORK/post.headers" | tr -d '\r')
  bytes=$(stat -c %s "$www/posts/$POST_SLUG/index.html")
  echo "  page: $path, $bytes bytes, $ctype"

  origin_port=$(free_port)
  origin_conf "$WORK/nginx-origin" "$origin_port" "$www" "$ctype"
  start_nginx "$WORK/nginx-origin" "$origin_port"
  # The baseline asks for the file by name so nginx serves it without the index
  # module's internal redirect: its best case.
  local file_path="/posts/$POST_SLUG/index.html"
  curl -s "http://127.0.0.1:$origin_port$file_path" | cmp -s - "$www/posts/$POST_SLUG/index.html" ||
    die "the baseline nginx does not serve the saved page"

  echo "  (a) one request per connection (Connection: close on both)"
  # CPU per request, read around the runs: where nib's time goes against nginx's.
  local worker c0 c1 l0 l1 w0 w1 nib_us loop_us nginx_us
  worker=$(pgrep -P "$(cat "$WORK/nginx-origin/nginx.pid")" | head -n 1)
  c0=$(cpu_us "/proc/$NIB_PID/stat")
  l0=$(cpu_us "/proc/$NIB_PID/task/$NIB_PID/stat")
  w0=$(cpu_us "/proc/$worker/stat")
  alternate "nib direct" "http://127.0.0.1:$NIB_PORT$path" \
    "nginx, same bytes from disk" "http://127.0.0.1:$origin_port$file_path" -H "Connection: close"
  c1=$(cpu_us "/proc/$NIB_PID/stat")
  l1=$(cpu_us "/proc/$NIB_PID/task/$NIB_PID/stat")
  w1=$(cpu_us "/proc/$worker/stat")
  nib_direct=$MED_A nginx_file=$MED_B
  r_a=$(ratio "$nib_direct" "$nginx_file")
  echo "      medians: nib $nib_direct, nginx $nginx_file req/s; ratio $r_a   (target >= 0.80: $(verdict "$r_a"))"
  nib_us=$(((c1 - c0) / REQ_A))
  loop_us=$(((l1 - l0) / REQ_A))
  nginx_us=$(((w1 - w0) / REQ_B))
  echo "      CPU per request: nib $nib_us us (request loop $loop_us us; tiny_http's accept and"
  echo "      connection threads $((nib_us - loop_us)) us), nginx worker $nginx_us us"

  # The same deploy-derived front end, once more, proxying to the baseline nginx; it
  # runs as a separate process so each upstream has a CPU of its own, like nib does.
  echo "  (b) through nginx (deploy/nginx.conf), keep-alive from wrk to nginx"
  static_port=$(free_port)
  front_conf "$WORK/nginx-front-static" "$static_port" "$origin_port"
  start_nginx "$WORK/nginx-front-static" "$static_port"
  alternate "nginx -> nib" "http://127.0.0.1:$nib_front$path" \
    "nginx -> static upstream (nginx, same bytes)" "http://127.0.0.1:$static_port$file_path"
  nib_proxied=$MED_A static_proxied=$MED_B
  r_b=$(ratio "$nib_proxied" "$static_proxied")
  echo "      medians: nginx->nib $nib_proxied, nginx->static $static_proxied req/s; ratio $r_b   (target >= 0.80: $(verdict "$r_b"))"

  row "post page req/s, nib direct (Connection: close)" "$nib_direct"
  row "post page req/s, nginx from disk (Connection: close)" "$nginx_file"
  row "ratio (a) nib / nginx from disk" "$r_a" ">= 0.80"
  row "CPU per post page: nib (its loop, tiny_http's threads) / nginx" \
    "$nib_us ($loop_us, $((nib_us - loop_us))) / $nginx_us us"
  row "post page req/s, nginx -> nib" "$nib_proxied"
  row "post page req/s, nginx -> static upstream" "$static_proxied"
  row "ratio (b) nginx->nib / nginx->static" "$r_b" ">= 0.80"

  read -r hwm rss threads < <(proc_mem "$NIB_PID")
  echo "  nib after these runs: VmHWM $(mb "$hwm")  VmRSS $(mb "$rss")  threads $threads"
  row "VmHWM after part c (post page, direct and via nginx)" "$(mb "$hwm")"
}

# ---------------------------------------------------------------- d. binary

bench_binary() {
  local size kind
  section "d. binary"
  size=$(stat -c %s "$NIB")
  kind=$(file -b "$NIB")
  echo "  size: $size bytes ($(mb $((size / 1024))))"
  echo "  file: $kind"
  echo "  ldd:  $(ldd "$NIB" 2>&1 | head -n 3 | paste -sd ';' -)"
  row "binary size" "$(mb $((size / 1024)))"
  row "binary linkage" "$(grep -oE 'static(-pie)? linked|statically linked|dynamically linked' <<<"$kind" || echo "$kind")"
}

# ---------------------------------------------------------------- e. short links

# nib is started with this admin token from part e on, so the bench can call the API.
BENCH_TOKEN=nibbench0123456789abcdefghijklmn   # 32 characters
LINK_TARGET=https://example.com/

# The redirect baseline: one nginx worker answering `return 302` for the one code, with
# the headers nib sends on a redirect (nosniff, Cache-Control) so both answers carry the
# same information; anything else is 404.
redirect_conf() {
  local dir=$1 port=$2 code=$3 target=$4
  baseline_conf "$dir" "    server {
        listen 127.0.0.1:$port;
        location = /$code {
            add_header X-Content-Type-Options nosniff;
            add_header Cache-Control \"private, max-age=0\";
            return 302 $target;
        }
    }"
}

# Fail loudly when URL does not answer 302 to LOCATION.
expect_redirect() {
  local url=$1 want=$2 got
  got=$(curl -s -o /dev/null --max-time 5 -w '%{http_code} %{redirect_url}' "$url")
  [[ $got == "302 $want" ]] || die "$url answers '$got', expected '302 $want'"
}

# Clicks of CODE as the API reports them (exact, including the unwritten batch).
link_clicks() {
  curl -sf --max-time 5 -H "Authorization: Bearer $BENCH_TOKEN" \
    "http://127.0.0.1:$NIB_PORT/api/links/$1" |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["clicks"])'
}

# Completed requests in run_wrk NAME's output ("N requests in 10.00s, ...").
wrk_requests() { awk '$2 == "requests" && $3 == "in" { print $1 }' "$WORK/wrk-$1.txt"; }

verdict_ge() { awk -v r="$1" -v t="$2" 'BEGIN { exit !(r >= t) }' && echo "ok" || echo "BELOW TARGET"; }

bench_redirects() {
  local base created nginx_port nib_rps nginx_rps r before after sent
  section "e1. redirect requests/s vs nginx return 302, nginx with 1 worker (wrk -t2 -c8, Connection: close on both, ${BENCH_SECONDS}s per run)"
  export NIB_ADMIN_TOKEN=$BENCH_TOKEN
  restart_nib
  base="http://127.0.0.1:$NIB_PORT"
  created=$(curl -sf --max-time 10 -X POST -H "Authorization: Bearer $BENCH_TOKEN" \
    -H 'Content-Type: application/json' -d "{\"url\": \"$LINK_TARGET\"}" "$base/api/links") ||
    die "POST /api/links did not answer 2xx"
  CODE=$(python3 -c 'import json, sys; print(json.load(sys.stdin)["code"])' <<<"$created")
  echo "  link: /$CODE -> $LINK_TARGET (created with POST /api/links)"
  expect_redirect "$base/$CODE" "$LINK_TARGET"

  nginx_port=$(free_port)
  redirect_conf "$WORK/nginx-redirect" "$nginx_port" "$CODE" "$LINK_TARGET"
  start_nginx "$WORK/nginx-redirect" "$nginx_port"
  expect_redirect "http://127.0.0.1:$nginx_port/$CODE" "$LINK_TARGET"

  note_close_header "$base/$CODE"
  before=$(link_clicks "$CODE")
  run_wrk "nib redirect GET CODE" 8 "$base/$CODE" -H "Connection: close"
  nib_rps=$RPS
  sent=$(wrk_requests "nib redirect GET CODE")
  run_wrk "nginx return 302" 8 "http://127.0.0.1:$nginx_port/$CODE" -H "Connection: close"
  nginx_rps=$RPS
  r=$(ratio "$nib_rps" "$nginx_rps")
  echo "      ratio nib / nginx: $r   (target >= 0.70: $(verdict_ge "$r" 0.7))"
  # Every redirect counts a click: in memory, written in one batch a second.
  sleep 1.5
  after=$(link_clicks "$CODE")
  echo "  clicks counted during the nib run: $((after - before)), wrk completed $sent requests"
  echo "  (nib counts them in memory and writes one batch a second)"

  row "redirect req/s, nib GET /CODE (Connection: close)" "$nib_rps"
  row "redirect req/s, nginx return 302 (Connection: close)" "$nginx_rps"
  row "ratio nib / nginx return 302" "$r" ">= 0.70"
  row "clicks counted / wrk requests, redirect run" "$((after - before)) / $sent"
}

# Where nib's memory is, now: /proc/PID/smaps by kind of mapping (bench/smaps.py).
# LABEL names the moment for the summary.
mem_breakdown() {
  local label=$1 line hwm rss threads
  line=$(python3 "$REPO/bench/smaps.py" "$NIB_PID")
  read -r hwm rss threads < <(proc_mem "$NIB_PID")
  echo "  smaps, $label:"
  echo "    $line"
  echo "    (VmHWM $(mb "$hwm")  VmRSS $(mb "$rss")  threads $threads)"
  row "RSS kB, $label" "$(python3 -c '
import re, sys
k = dict(re.findall(r"(\w+) (\d+) kB", sys.argv[1]))
b, h, t = int(k["binary"]), int(k["heap"]), int(k["tstacks"])
print(f"bin {b}, heap {h}, stacks {t}, rest {sum(map(int, k.values())) - b - h - t}")' "$line")"
}

binary_breakdown() {
  local text data bss bytes
  bytes=$(stat -c %s "$NIB")
  read -r text data bss _ < <(size "$NIB" | tail -n 1)
  echo "  binary: $bytes bytes on disk; size(1): text $text, data $data, bss $bss"
  row "binary bytes: file / text / data / bss" "$bytes/$text/$data/$bss"
}

# The links every part after a. uses (the mixed pages follow three of them): LINK_N
# codes in CODES, one a line. Through the API each link is one fsynced commit (minutes
# for 100,000), so they go straight into the stopped server's database, one transaction
# (bench/load-links.py).
LINK_N=100000
CODES=$WORK/codes.txt
load_links() {
  local n=$LINK_N base db_kb i code
  section "links: $n short links into the database"
  stop "$NIB_PID"
  python3 "$REPO/bench/load-links.py" "$SITE/nib.db" "$n" "$CODES"
  db_kb=$(du -k --apparent-size "$SITE/nib.db" | cut -f1)
  echo "  database: $(mb "$db_kb") ($BENCH_POSTS posts, $n links)"
  row "database size, $BENCH_POSTS posts + $n links" "$(mb "$db_kb")"
  start_nib
  echo "  nib restarted on it: $START_MS ms to first 200 on /"
  row "warm start to serving, $n links" "$START_MS ms"
  base="http://127.0.0.1:$NIB_PORT"
  for i in 0 $((n / 2)) $((n - 1)); do
    code=$(sed -n "$((i + 1))p" "$CODES")
    expect_redirect "$base/$code" "https://example.com/page/$i"
  done
}

bench_many_links() {
  local n=$LINK_N codes=$CODES base hwm rss threads code mid secs out bytes path
  section "e2. $n links: peak RSS under wrk -t2 -c8 at random codes, Connection: close, ${BENCH_SECONDS}s"
  restart_nib
  base="http://127.0.0.1:$NIB_PORT"

  binary_breakdown
  mem_breakdown "idle after start"
  run_wrk "random codes of $n, -c8, Connection: close" 8 "$base" \
    -H "Connection: close" -s "$REPO/bench/links.lua" -- "$codes"
  read -r hwm rss threads < <(proc_mem "$NIB_PID")
  printf '  %-44s VmHWM %s  VmRSS %s  threads %s\n' "" "$(mb "$hwm")" "$(mb "$rss")" "$threads"
  row "VmHWM, $n links, wrk -c8 random codes" "$(mb "$hwm")" "<= 3.5 MB"
  row "VmRSS / threads after that run" "$(mb "$rss") / $threads"
  row "redirect req/s, $n links, random codes" "$RPS"
  sleep 2   # let the last click batch land, so this is idle
  mem_breakdown "idle after the $n-link run"

  # The owner's list and a visitor's preview over the big table, once each.
  mid=$(sed -n "$((n / 2 + 1))p" "$codes")
  # nib looks for changed posts from the request loop, at most every 1.5 s (one read of
  # its inotify watch, a scan only after a change; see a.); /healthz takes any such check.
  curl -s -o /dev/null --max-time 10 "$base/healthz"
  echo "  once each (curl, idle server, after one GET /healthz):"
  for path in "/api/links?limit=50" "/$mid+"; do
    out=$(curl -s -o /dev/null --max-time 10 -H "Authorization: Bearer $BENCH_TOKEN" \
      -w '%{http_code} %{size_download} %{time_total}' "$base$path")
    read -r code bytes secs <<<"$out"
    secs=$(awk -v s="$secs" 'BEGIN { printf "%.1f", s * 1000 }')
    printf '    %-62s %s %7s bytes %7s ms\n' "$path" "$code" "$bytes" "$secs"
    [[ $code == 200 ]] || echo "    warning: $path answers $code"
    row "GET ${path/$mid/CODE} once, $n links" "$secs ms ($code)"
  done
  read -r hwm rss threads < <(proc_mem "$NIB_PID")
  echo "  after those: VmHWM $(mb "$hwm")  VmRSS $(mb "$rss")  threads $threads"
  row "VmHWM after the run and those two requests" "$(mb "$hwm")"

  # Control: the same run over 100 codes only. Each redirect adds to an in-memory click
  # count per link, written once a second, so a second of random codes over 100,000
  # links holds thousands of distinct counts (and writes as many rows); 100 hot codes
  # hold 100. The difference between the two VmHWM figures is that batch.
  head -n 100 "$codes" >"$WORK/codes-100.txt"
  restart_nib
  base="http://127.0.0.1:$NIB_PORT"
  run_wrk "100 hot codes, -c8, Connection: close" 8 "$base" \
    -H "Connection: close" -s "$REPO/bench/links.lua" -- "$WORK/codes-100.txt"
  read -r hwm rss threads < <(proc_mem "$NIB_PID")
  printf '  %-44s VmHWM %s  VmRSS %s  threads %s\n' "" "$(mb "$hwm")" "$(mb "$rss")" "$threads"
  row "VmHWM, $n links, wrk -c8 over 100 hot codes (control)" "$(mb "$hwm")"
  row "redirect req/s, 100 hot codes" "$RPS"
}

# ---------------------------------------------------------------- f. process life

# PID of the process listening on 127.0.0.1:PORT, as the kernel sees it (ss -p), so a
# re-exec that kept the PID and one that did not are told apart by the socket's owner.
listener_pid() {
  ss -Hltnp "sport = :$1" | grep -oE 'pid=[0-9]+' | head -n 1 | cut -d= -f2 || true
}

# "A / B / C MB" from kB figures.
mb2() { awk -v a="$1" -v b="$2" -v c="$3" 'BEGIN { printf "%.2f / %.2f / %.2f MB", a / 1024, b / 1024, c / 1024 }'; }

fd_count() { local fds=("/proc/$1/fd"/*); echo "${#fds[@]}"; }

# Reap a background job that has ended (or will) and drop it from PIDS.
finish() { wait "$1" 2>/dev/null || true; stop "$1"; }

# "connect C, read R, write W, timeout T" from a wrk output file (zeros when wrk printed
# no Socket errors line), and the Non-2xx/3xx count.
wrk_socket_errors() {
  awk '$1 == "Socket" && $2 == "errors:" { gsub(",", ""); s = sprintf("connect %s, read %s, write %s, timeout %s", $4, $6, $8, $10) }
       END { print (s == "" ? "connect 0, read 0, write 0, timeout 0" : s) }' "$1"
}
wrk_non2xx() { awk '/Non-2xx or 3xx responses:/ { n = $NF } END { print n + 0 }' "$1"; }
wrk_lat() { awk -v q="$2" '$1 == q { print $2 }' "$1"; }
wrk_max() { awk '$1 == "Latency" && NF >= 4 { print $4; exit }' "$1"; }

# Wait until nib's stderr has WANT "nib: serving" lines (each image prints one when it
# starts serving) or TIMEOUT seconds pass; print the count.
wait_serving() {
  local want=$1 timeout=$2 n deadline
  deadline=$(($(now_us) + timeout * 1000000))
  while :; do
    n=$(grep -c '^nib: serving' "$NIB_ERR" || true)
    ((n >= want || $(now_us) >= deadline)) && break
    sleep 0.1
  done
  echo "$n"
}

# f1: wrk -t2 -c4 keep-alive at URL for BENCH_SECONDS, SIGHUP to nib 5 times at 1/6 ..
# 5/6 of the run. LABEL names the run in the summary.
restarts_under_load() {
  local label=$1 url=$2 target=$3 out=$WORK/wrk-f1-${1// /-}.txt wrk_pid t0 k at pid_before pid_after
  local serving hwm rss threads reqs errs non p99 max
  pid_before=$(listener_pid "$NIB_PORT")
  wrk -t2 -c4 -d"${BENCH_SECONDS}s" --latency "$url" -s "$REPO/bench/mixed.lua" -- "${MIXED[@]}" >"$out" &
  wrk_pid=$!
  PIDS+=("$wrk_pid")
  t0=$(now_us)
  for k in 1 2 3 4 5; do
    at=$((t0 + BENCH_SECONDS * 1000000 * k / 6))
    while (($(now_us) < at)); do sleep 0.05; done
    kill -HUP "$NIB_PID"
  done
  finish "$wrk_pid"
  serving=$(wait_serving 6 20)
  wait_200 "http://127.0.0.1:$NIB_PORT/" "$NIB_PID" 10 || echo "  warning: nib does not answer 200 after the restarts"
  pid_after=$(listener_pid "$NIB_PORT")
  read -r hwm rss threads < <(proc_mem "$NIB_PID")
  reqs=$(awk '$2 == "requests" && $3 == "in" { print $1 }' "$out")
  errs=$(wrk_socket_errors "$out")
  non=$(wrk_non2xx "$out")
  p99=$(wrk_lat "$out" 99%)
  max=$(wrk_max "$out")
  printf '  %-30s %s requests, non-2xx/3xx %s, socket errors: %s\n' "$label" "$reqs" "$non" "$errs"
  printf '  %-30s p99 %s, max %s; PID %s before, %s after; "nib: serving" lines %s\n' "" "$p99" "$max" "$pid_before" "$pid_after" "$serving"
  printf '  %-30s after: VmHWM %s  VmRSS %s  threads %s\n' "" "$(mb "$hwm")" "$(mb "$rss")" "$threads"
  row "f1 $label: requests, 5 SIGHUPs" "$reqs (p99 $p99, max $max)"
  row "f1 $label: non-2xx/3xx" "$non" "0"
  row "f1 $label: socket errors c/r/w/t" "$(sed -E 's/[a-z]+ //g; s/, /\//g' <<<"$errs")" "$target"
  row "f1 $label: PID before / after" "$pid_before / $pid_after" "equal"
  row "f1 $label: VmHWM / VmRSS / threads after" "$(mb "$hwm") / $(mb "$rss") / $threads"
  row "f1 $label: 'nib: serving' lines" "$serving" "6"
}

# Sample nib while PID (a background job) runs: largest VmRSS, threads and fd count seen,
# and the last VmHWM, into S_HWM S_RSS S_THREADS S_FDS.
S_HWM=0 S_RSS=0 S_THREADS=0 S_FDS=0
sample_nib() {
  local h r t f
  read -r h r t < <(proc_mem "$NIB_PID")
  f=$(fd_count "$NIB_PID")
  S_HWM=$h
  ((r > S_RSS)) && S_RSS=$r
  ((t > S_THREADS)) && S_THREADS=$t
  ((f > S_FDS)) && S_FDS=$f
  return 0
}

# Wait for hostile.py's ready file (every socket open), failing after 60 s.
wait_ready() {
  local file=$1 pid=$2 i
  for ((i = 0; i < 600; i++)); do
    [[ -s $file ]] && return
    kill -0 "$pid" 2>/dev/null || die "hostile.py exited before opening its sockets"
    sleep 0.1
  done
  die "hostile.py did not open its sockets within 60 s"
}

# One hostile.py report line per kind: "idle: 200 opened, 200 closed by the server after
# 10.0-10.1 s (median 10.0), answers {...}".
hostile_lines() {
  python3 -c '
import json, sys
r = json.load(open(sys.argv[1]))
for kind in ("idle", "half", "big-header", "big-body"):
    k = r.get(kind)
    if not k:
        continue
    when = ""
    if k["closed_by_server"]:
        when = " after %s-%s s (median %s)" % (k["close_s_min"], k["close_s_max"], k["close_s_median"])
    print("%s: %d opened, %d closed by the server%s, answers %s" % (
        kind, k["opened"], k["closed_by_server"], when,
        " ".join("%s x%d" % kv for kv in sorted(k["answers"].items()))))
if r["errors"]:
    print("connect/send errors: %s" % r["errors"])' "$1"
}
hostile_field() {
  python3 -c 'import json, sys; r = json.load(open(sys.argv[1])); print(r.get(sys.argv[2], {}).get(sys.argv[3]))' "$@"
}

# f2: 400 idle or half-sent sockets, 3 requests with a 100 KB header line and 3 declaring
# a 100 MB body, all at nginx (deploy/nginx.conf), while wrk -t1 -c4 reads pages through it.
hostile_via_nginx() {
  local port dir=$WORK/nginx-f2 hpid wrk_pid out=$WORK/wrk-f2.txt json=$WORK/f2-hostile.json
  local hwm0 rss0 thr0 fds0 hwm rss threads fds p50 p99 rps codes
  section "f2. hostile clients through nginx: 200 idle + 200 half-sent sockets, 3 x 100 KB header, 3 x 100 MB body; wrk -t1 -c4 pages meanwhile, ${BENCH_SECONDS}s"
  restart_nib
  port=$(free_port)
  front_conf "$dir" "$port" "$NIB_PORT"
  start_nginx "$dir" "$port"
  read -r hwm0 rss0 thr0 < <(proc_mem "$NIB_PID")
  fds0=$(fd_count "$NIB_PID")
  echo "  nib before: VmHWM $(mb "$hwm0")  VmRSS $(mb "$rss0")  threads $thr0  fds $fds0"
  python3 "$REPO/bench/hostile.py" 127.0.0.1 "$port" --idle 200 --half 200 \
    --big-header 3 --big-body 3 --hold $((BENCH_SECONDS + 1)) --ready "$WORK/f2.ready" >"$json" &
  hpid=$!
  PIDS+=("$hpid")
  wait_ready "$WORK/f2.ready" "$hpid"
  wrk -t1 -c4 -d"${BENCH_SECONDS}s" --latency "http://127.0.0.1:$port" \
    -s "$REPO/bench/mixed.lua" -- "${MIXED[@]}" >"$out" &
  wrk_pid=$!
  PIDS+=("$wrk_pid")
  S_HWM=0 S_RSS=0 S_THREADS=0 S_FDS=0
  while kill -0 "$wrk_pid" 2>/dev/null && [[ ! -s $out ]]; do sample_nib; sleep 0.2; done
  finish "$wrk_pid"
  finish "$hpid"
  sleep 1
  read -r hwm rss threads < <(proc_mem "$NIB_PID")
  fds=$(fd_count "$NIB_PID")
  RPS=$(awk '$1 == "Requests/sec:" { printf "%.0f", $2 }' "$out")
  p50=$(wrk_lat "$out" 50%)
  p99=$(wrk_lat "$out" 99%)
  hostile_lines "$json" | sed 's/^/  hostile.py: /'
  printf '  wrk -t1 -c4 pages via nginx: %s req/s, p50 %s, p99 %s, non-2xx/3xx %s, socket errors: %s\n' \
    "$RPS" "$p50" "$p99" "$(wrk_non2xx "$out")" "$(wrk_socket_errors "$out")"
  echo "  nib during (largest seen): VmHWM $(mb "$S_HWM")  VmRSS $(mb "$S_RSS")  threads $S_THREADS  fds $S_FDS"
  echo "  nib after:                 VmHWM $(mb "$hwm")  VmRSS $(mb "$rss")  threads $threads  fds $fds"
  # Status codes nginx logged, the wrk pages included (4xx are the hostile requests).
  codes=$(awk -F'"' '{ split($3, a, " "); print a[1] }' "$dir/access.log" | sort | uniq -c |
    awk '{ printf "%s%s x%s", (NR > 1 ? ", " : ""), $2, $1 }')
  echo "  nginx access.log statuses: $codes"
  # 499 is nginx's "client closed the request": which requests, so it is not misread.
  awk -F'"' '{ split($3, a, " ") } a[1] == 499 { print $2 }' "$dir/access.log" | sort | uniq -c |
    head -n 5 | sed 's/^ */  499 (client went away): /' || true
  row "f2 via nginx, pages p50 / p99 during hostiles" "$p50 / $p99" "p99 < 1 s"
  row "f2 via nginx, pages req/s during hostiles" "$RPS"
  # VmHWM before is the fresh start's own peak; the page load alone (f1, b.) lifts it too.
  row "f2 nib VmHWM before / during / after" "$(mb2 "$hwm0" "$S_HWM" "$hwm")" "<= 3.5 MB"
  row "f2 nib VmRSS before / max during / after" "$(mb2 "$rss0" "$S_RSS" "$rss")"
  row "f2 nib threads before / max during / after" "$thr0 / $S_THREADS / $threads"
  row "f2 nib fds before / max during / after" "$fds0 / $S_FDS / $fds"
  row "f2 nginx 4xx logged" "$(tr ',' '\n' <<<"$codes" | grep -E '^ ?4' | paste -sd ',' - | sed 's/^ //' || true)"
}

# f3: 50 half-sent + 50 idle sockets straight at nib, until its guard has closed them
# all (at most 30 s), while one normal page is fetched every 0.5 s.
hostile_direct() {
  local hpid json=$WORK/f3-hostile.json base code secs worst=0 bad=0 fetched=0 cut lines
  local hold=30 t_next
  section "f3. hostile clients straight at nib: 50 half-sent + 50 idle sockets, until the guard closes them (<= ${hold}s)"
  restart_nib
  base="http://127.0.0.1:$NIB_PORT"
  python3 "$REPO/bench/hostile.py" 127.0.0.1 "$NIB_PORT" --idle 50 --half 50 \
    --hold "$hold" --until-closed --ready "$WORK/f3.ready" >"$json" &
  hpid=$!
  PIDS+=("$hpid")
  wait_ready "$WORK/f3.ready" "$hpid"
  S_HWM=0 S_RSS=0 S_THREADS=0 S_FDS=0
  t_next=$(now_us)
  while kill -0 "$hpid" 2>/dev/null && [[ ! -s $json ]]; do
    sample_nib
    if (($(now_us) >= t_next)); then
      t_next=$(($(now_us) + 500000))
      read -r code secs < <(curl -s -o /dev/null --max-time 5 -w '%{http_code} %{time_total}\n' "$base${MIXED[2]}" || true)
      fetched=$((fetched + 1))
      [[ $code == 200 ]] || bad=$((bad + 1))
      awk -v a="$secs" -v b="$worst" 'BEGIN { exit !(a > b) }' && worst=$secs
    fi
    sleep 0.1
  done
  finish "$hpid"
  hostile_lines "$json" | sed 's/^/  hostile.py: /'
  lines=$(grep -c '^nib: guard:' "$NIB_ERR" || true)
  cut=$(sed -n 's/^nib: guard: closed \([0-9]*\) connections.*/\1/p' "$NIB_ERR" | awk '{ s += $1 } END { print s + 0 }')
  grep '^nib: guard:' "$NIB_ERR" | head -n 6 | sed 's/^/  nib stderr: /' || true
  echo "  guard: $cut connections closed in $lines log lines"
  echo "  nib during (largest seen): VmHWM $(mb "$S_HWM")  VmRSS $(mb "$S_RSS")  threads $S_THREADS  fds $S_FDS"
  worst=$(awk -v s="$worst" 'BEGIN { printf "%.0f", s * 1000 }')
  echo "  normal page meanwhile: $fetched fetched, slowest $worst ms, $bad not 200"
  row "f3 direct: guard closed (of 100)" "$cut" "100"
  row "f3 direct: idle closed after (min-max)" "$(hostile_field "$json" idle close_s_min)-$(hostile_field "$json" idle close_s_max) s"
  row "f3 direct: half-sent closed after (min-max)" "$(hostile_field "$json" half close_s_min)-$(hostile_field "$json" half close_s_max) s"
  row "f3 direct: nib threads / VmHWM during (max)" "$S_THREADS / $(mb "$S_HWM")"
  row "f3 direct: normal page meanwhile, slowest" "$worst ms ($fetched, $bad not 200)" "< 1000 ms"
}

bench_process_life() {
  local port
  section "f1. 5 SIGHUP restarts under wrk -t2 -c4 mixed pages, keep-alive, ${BENCH_SECONDS}s"
  echo "  Keep-alive on purpose, the harder case for a restart: keep-alive sockets idle at a"
  echo "  restart are closed between requests, which wrk counts as read errors and"
  echo "  reconnects: at most 4 (its connections) per SIGHUP directly; none through nginx."
  restart_nib
  restarts_under_load "direct" "http://127.0.0.1:$NIB_PORT" "<= 20"
  restart_nib
  port=$(free_port)
  front_conf "$WORK/nginx-f1" "$port" "$NIB_PORT"
  start_nginx "$WORK/nginx-f1" "$port"
  restarts_under_load "via nginx" "http://127.0.0.1:$port" "0/0/0/0"
  hostile_via_nginx
  hostile_direct
}

# ---------------------------------------------------------------- headroom

# Poll PID's VmHWM every 0.1 s into FILE (the largest reading) until PID is gone or we
# are stopped. VmHWM read once after a run is not enough: on this kernel (its RSS
# counters are per-CPU and approximate) it was seen to read 4.12 MB during a run and
# 3.92 MB after it, so the figure is the largest reading.
watch_hwm() {
  local pid=$1 file=$2 max=0 k v rest
  while kill -0 "$pid" 2>/dev/null; do
    while read -r k v rest; do
      [[ $k == VmHWM: ]] && ((v > max)) && max=$v
    done <"/proc/$pid/status" 2>/dev/null || true
    echo "$max" >"$file"
    sleep 0.1
  done
}

# The mixed load of part b. at -c8, Connection: close, three times, each on a freshly
# restarted nib so each run's VmHWM is that run's own peak.
bench_headroom() {
  local i hwm rss threads max=0 all=() wpid seen
  section "headroom. nib's VmHWM under the mixed load, wrk -t2 -c8, Connection: close, ${BENCH_SECONDS}s, 3 runs on a fresh nib each"
  echo "  paths: ${MIXED[*]}"
  for i in 1 2 3; do
    restart_nib
    if ((i == 1)); then
      check_paths "http://127.0.0.1:$NIB_PORT" "${MIXED[@]}"
      path_latency "http://127.0.0.1:$NIB_PORT" "${MIXED[@]}"
      restart_nib   # so run 1's VmHWM is the run's own, like the others'
    fi
    watch_hwm "$NIB_PID" "$WORK/hwm-$i.txt" &
    wpid=$!
    PIDS+=("$wpid")
    run_wrk "headroom run $i, direct -c8, Connection: close" 8 "http://127.0.0.1:$NIB_PORT" \
      -H "Connection: close" -s "$REPO/bench/mixed.lua" -- "${MIXED[@]}"
    read -r hwm rss threads < <(proc_mem "$NIB_PID")
    stop "$wpid"
    seen=$(cat "$WORK/hwm-$i.txt" 2>/dev/null || echo 0)
    printf '  %-44s VmHWM %s (largest reading during the run %s)  VmRSS %s  threads %s\n' "" \
      "$(mb "$hwm")" "$(mb "$seen")" "$(mb "$rss")" "$threads"
    ((seen > hwm)) && hwm=$seen
    all+=("$(mb "$hwm")")
    ((hwm > max)) && max=$hwm
  done
  echo "  headroom: VmHWM per run ${all[0]}, ${all[1]}, ${all[2]}; largest $(mb "$max")   (target <= 3.3 MB every run: $(
    ((max <= 3379)) && echo ok || echo ABOVE TARGET))"
  row "headroom: VmHWM of 3 mixed -c8 runs (fresh nib each)" "${all[0]}, ${all[1]}, ${all[2]}" "<= 3.3 MB each"
}

# ---------------------------------------------------------------- slow

# Run a helper script that prints lines for a person and "ROW|figure|value|target"
# lines for the summary; the latter become rows.
run_reporting() {
  local line figure value target
  while IFS= read -r line; do
    if [[ $line == ROW\|* ]]; then
      IFS='|' read -r _ figure value target <<<"$line"
      row "$figure" "$value" "$target"
    else
      echo "$line"
    fi
  done < <("$@" || echo "  warning: $(basename "$2") exited with status $?")
}

# Slow readers of an 8 MB static file and half-sent login bodies, direct and through
# nginx (bench/slow.py). Through nginx, static/ is nginx's and it holds both kinds of
# client itself: that is the deployment deploy/nginx.conf describes.
bench_slow() {
  local big=$SITE/static/big.bin port pages measure=$BENCH_SECONDS hold
  hold=$((BENCH_SECONDS + 5))
  section "slow. 50 slow readers of /static/big.bin (8 MB, SO_RCVBUF 4096, never read) + 20 half-sent POST /admin/login bodies for ${hold}s; 4 clients GET post pages for ${measure}s meanwhile"
  head -c $((8 << 20)) /dev/zero >"$big"
  pages=(--page "${MIXED[2]}" --page "${MIXED[3]}" --page "${MIXED[5]}" --page "${MIXED[8]}")

  restart_nib
  check_paths "http://127.0.0.1:$NIB_PORT" /static/big.bin "${MIXED[2]}"
  run_reporting python3 "$REPO/bench/slow.py" "$NIB_PORT" --pid "$NIB_PID" --big /static/big.bin \
    "${pages[@]}" --measure "$measure" --hold "$hold" --label direct
  kill -0 "$NIB_PID" 2>/dev/null || echo "  warning: nib (pid $NIB_PID) died during the direct run"

  restart_nib
  port=$(free_port)
  front_conf "$WORK/nginx-slow" "$port" "$NIB_PORT"
  start_nginx "$WORK/nginx-slow" "$port"
  check_paths "http://127.0.0.1:$port" /static/big.bin "${MIXED[2]}"
  run_reporting python3 "$REPO/bench/slow.py" "$port" --pid "$NIB_PID" --big /static/big.bin \
    "${pages[@]}" --measure "$measure" --hold "$hold" --label "via nginx"
  kill -0 "$NIB_PID" 2>/dev/null || echo "  warning: nib (pid $NIB_PID) died during the nginx run"
  rm -f "$big"
}

# ---------------------------------------------------------------- fairness

# BENCH_FAIR_RUNS keep-alive runs in a row on one nib: a run that finds the server
# worse off than the others (connections the guard cut, a thread pool left grown or
# shrunk) shows as a low run against the median.
bench_fairness() {
  local code url i all=() med min r
  code=$(sed -n "$((LINK_N / 2 + 1))p" "$CODES")
  section "fairness. $BENCH_FAIR_RUNS runs of wrk -t2 -c32 keep-alive on one short link (/$code), ${BENCH_SECONDS}s each, one nib"
  restart_nib
  url="http://127.0.0.1:$NIB_PORT/$code"
  expect_redirect "$url" "https://example.com/page/$((LINK_N / 2))"
  for ((i = 1; i <= BENCH_FAIR_RUNS; i++)); do
    run_wrk "fairness run $i, -c32 keep-alive" 32 "$url"
    all+=("$RPS")
  done
  med=$(median "${all[@]}")
  min=$(printf '%s\n' "${all[@]}" | sort -n | head -n 1)
  r=$(ratio "$min" "$med")
  echo "  fairness: req/s per run ${all[*]}; median $med, min $min, min/median $r   (target >= 0.8: $(verdict_ge "$r" 0.8))"
  row "fairness: req/s of $BENCH_FAIR_RUNS -c32 keep-alive runs" "$(IFS=/; echo "${all[*]}")"
  row "fairness: median req/s, min / median" "$med, $r" ">= 0.8"
}

# ---------------------------------------------------------------- flood

bench_flood() {
  section "flood. 6 connections stream one endless header line for ${BENCH_SECONDS}s; one request with 5,000 short headers (bench/flood.py)"
  restart_nib
  run_reporting python3 "$REPO/bench/flood.py" "$NIB_PORT" --pid "$NIB_PID" --page "${MIXED[2]}" \
    --conns 6 --seconds "$BENCH_SECONDS"
}

# ---------------------------------------------------------------- summary

print_summary() {
  local r figure value target
  section "summary (Markdown)"
  echo
  echo "nib bench, $(date -u +%Y-%m-%d), $BENCH_POSTS posts, ${BENCH_SECONDS}s wrk runs, $(nproc) CPUs ($CPU), load average at the end $(cut -d' ' -f1-3 /proc/loadavg)"
  echo
  printf '| %-52s | %-24s | %-10s |\n' figure value target
  printf '|%s|%s|%s|\n' "$(printf -- '-%.0s' {1..54})" "$(printf -- '-%.0s' {1..26})" "$(printf -- '-%.0s' {1..12})"
  for r in "${SUMMARY[@]}"; do
    IFS='|' read -r figure value target <<<"$r"
    printf '| %-52s | %-24s | %-10s |\n' "$figure" "$value" "$target"
  done
}

# ---------------------------------------------------------------- main

main() {
  local names n tag
  CPU=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
  need_tools
  echo "nib bench: $BENCH_POSTS posts, ${BENCH_SECONDS}s per wrk run, $(nproc) CPUs ($CPU), parts $BENCH_PARTS"
  # Other work on the machine moves every figure; say how busy it was.
  echo "  load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "  $(nginx -v 2>&1), $(wrk -v 2>&1 | head -n 1 | cut -d' ' -f1-3)"
  echo "  temp dir: $WORK"
  build_nib

  section "site"
  python3 "$REPO/bench/gen-site.py" "$SITE" "$BENCH_POSTS"
  echo "  $BENCH_POSTS posts, $(du -sh --apparent-size "$SITE/posts" | cut -f1) of Markdown in $SITE/posts"
  # File names sort oldest first. The mix reads the newest post (page 1), posts from
  # deep in the archive, a tag page and the feed, like readers and feed fetchers do.
  mapfile -t names < <(ls "$SITE/posts")
  n=${#names[@]}
  tag=$(sed -n 's/^tags: \[\([^],]*\).*/\1/p' "$SITE/posts/${names[n - 1]}")
  POST_SLUG=$(slug "${names[n / 2]}")
  # Then the other feeds, the sitemap, a deep archive page, a tag's second page and three
  # short links (from part a's 100,000), so every kind of public answer is in the mix.
  # Keep the first nine in place: parts f and slow take posts from them by index.
  MIXED=(/ /page/2/ "/posts/$(slug "${names[n - 1]}")/" "/posts/$POST_SLUG/" /tags/
    "/posts/$(slug "${names[n * 3 / 4]}")/" "/tags/$tag/" /feed.xml
    "/posts/$(slug "${names[0]}")/" /static/style.css
    /rss.xml /sitemap.xml /page/50/ "/tags/$tag/page/2/")

  bench_cold_start
  load_links
  MIXED+=("/$(sed -n 1p "$CODES")" "/$(sed -n "$((LINK_N / 2 + 1))p" "$CODES")"
    "/$(sed -n "${LINK_N}p" "$CODES")")
  if part b; then bench_memory; fi
  if part c; then
    part b || die "BENCH_PARTS: part c needs part b (its nginx front end)"
    bench_post_page
  fi
  if part d; then bench_binary; fi
  if part e; then
    section "e. short links"
    bench_redirects
    bench_many_links
  fi
  if part f; then bench_process_life; fi
  if part headroom; then bench_headroom; fi
  if part slow; then bench_slow; fi
  if part fairness; then bench_fairness; fi
  if part flood; then bench_flood; fi
  print_summary
}

main "$@"
