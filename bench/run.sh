#!/usr/bin/env bash
# bench/run.sh: the whole load test in one command, on loopback, bounded in time.
#
#   bench/run.sh [--quick] [--redis] [--no-nginx] [--no-perf] [--build DIR]
#                [--storm-only] [--storm-n N] [--storm-cap N] [--storm-check-after S]
#                [--storm-jitter S]
#
# Builds raproxy and the bench tools (build-bench/, fast wolfSSL), makes the fleet
# (bench/make-fleet.sh), then measures, all in this one run and on these cores:
#   1. the crypto ceiling (bench_ceiling)
#   2. a sweep of concurrency levels, storm (TLS connection per enrollment) and keep-alive,
#      through raproxy (1 loop + 1 worker) and through nginx terminating TLS in front of the
#      same mock CA (the cost of a plain TLS reverse proxy doing no RA work)
#   3. raproxy with 2 loops + 2 workers at the sweep's best level
#   4. p99 added latency at half of the keep-alive peak, with the processes pinned (taskset:
#      raproxy on its own core, the fleet and the mock CA on the others): raproxy vs the mock
#      CA directly, so the figure is raproxy's and not CPU sharing's
#   5. memory per idle TLS connection (after the handshake, after a keep-alive request) and
#      RSS after a slowloris wave, raproxy and nginx
#   6. the crypto workers' hand-back: loop wake-ups and CPU per finished job (bench_wakeup)
#   7. a stall of the mock CA under load: raproxy RSS, what devices get, recovery
#   8. a perf profile of raproxy in the storm case
#   9. a storm against a slow CA: --storm-n devices (default the fleet: 10,000, --quick 2,000)
#      enroll at once through raproxy + Redis into a mock CA capped at --storm-cap
#      certificates/s (default 100), with upstream.delayed_delivery on and then off: enrollments
#      completed, failures, the CA's peak rate, p50/p99 time-to-certificate, Redis memory per
#      waiting request (--storm-only runs this scenario alone; --storm-check-after and
#      --storm-jitter set delayed_delivery's check_after_s and check_after_jitter_s, 5 and 5)
# and writes bench/results/<date>-<host>.md with PNG plots (gnuplot) next to it.
# Default under 15 minutes (the storm takes about 5 of them), --quick under 4. Installs gnuplot and nginx (Debian packages)
# when missing. Every process it starts is stopped on exit.
set -euo pipefail

src=$(cd "$(dirname "$0")/.." && pwd)
build=$src/build-bench
quick=0 use_redis=0 use_nginx=1 use_perf=1 storm_only=0 storm_n= storm_cap=100
storm_check_after=5 storm_jitter=5
while [[ $# -gt 0 ]]; do
    case $1 in
    --quick) quick=1 ;;
    --redis) use_redis=1 ;;
    --no-nginx) use_nginx=0 ;;
    --no-perf) use_perf=0 ;;
    --build) build=$2; shift ;;
    --storm-only) storm_only=1 ;;
    --storm-n) storm_n=$2; shift ;;
    --storm-cap) storm_cap=$2; shift ;;
    --storm-check-after) storm_check_after=$2; shift ;;
    --storm-jitter) storm_jitter=$2; shift ;;
    -h | --help) sed -n '2,30p' "$0"; exit 0 ;;
    *) echo "run.sh: unknown option $1" >&2; exit 2 ;;
    esac
    shift
done

if ((quick)); then
    levels=(16 64) dur=3 ceil_s=0.3 idle_n=2000 hold=2 stall_run=9 fleet_n=2000
else
    levels=(4 16 64 256) dur=8 ceil_s=1 idle_n=10000 hold=4 stall_run=14 fleet_n=10000
fi
readonly STALL_AT=3 STALL_LEN=5 UPSTREAM_TIMEOUT_MS=2000
storm_n=${storm_n:-$fleet_n}
((storm_n > fleet_n)) && fleet_n=$storm_n
# the storm: requests at the CA at once, poll interval (s) and its jitter, how long a
# device waits for one answer, and how long the whole storm may last
readonly STORM_IN_FLIGHT=32 STORM_CHECK_AFTER_S=$storm_check_after STORM_JITTER_S=$storm_jitter
readonly STORM_TIMEOUT_MS=120000 # a device waits this long for one answer (openssl cmp: 120 s)
readonly STORM_MAX_S=900 STORM_HANDSHAKES=64 STORM_REDIS_TIMEOUT_MS=1000

log() { printf '[bench %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }

# ---- tools ----
need=()
command -v gnuplot >/dev/null || need+=(gnuplot-nox)
((use_nginx)) && ! command -v nginx >/dev/null && need+=(nginx-light)
if ((${#need[@]})); then
    log "installing ${need[*]}"
    if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        --no-install-recommends "${need[@]}"; } >/dev/null 2>&1; then
        log "could not install ${need[*]}; continuing without"
    fi
    # Debian starts nginx on port 80 after installing it; the bench runs its own.
    command -v systemctl >/dev/null && systemctl stop nginx >/dev/null 2>&1 || true
fi
command -v nginx >/dev/null || use_nginx=0
command -v perf >/dev/null || use_perf=0

log "building raproxy and the bench tools in $build"
mkdir -p "$build"
cmake -S "$src" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >"$build/bench-cmake.log" 2>&1 ||
    { cat "$build/bench-cmake.log" >&2; exit 1; }
cmake --build "$build" -j "$(nproc)" --target raproxy bench_fleet bench_mockca bench_ceiling \
    bench_mkfleet bench_wakeup >"$build/bench-build.log" 2>&1 || { tail -30 "$build/bench-build.log" >&2; exit 1; }
B=$build/bench
wolfssl_info=$(grep -o 'wolfSSL [a-z]* build:[^(]*' "$build/bench-cmake.log" | tail -1 | sed 's/ *$//' || true)

data=$build/bench-data
bash "$src/bench/make-fleet.sh" "$data" "$fleet_n" "$build" >&2
pki=$data/pki fleet=$data/fleet-$fleet_n.bin serials=$data/serials-$fleet_n.txt

work=$(mktemp -d "${TMPDIR:-/tmp}/raproxy-bench.XXXXXX")
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    sleep 0.3
    for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
}
trap cleanup EXIT
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
fd_limit=$(ulimit -n)
((idle_n > fd_limit - 200)) && idle_n=$((fd_limit - 200))

free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
wait_port() {
    for _ in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.1
    done
    log "nothing listens on port $1"; return 1
}
field() { grep -o "\b$1=[^ ]*" <<<"$2" | head -1 | cut -d= -f2-; }
rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
tree_pids() { echo "$1"; pgrep -P "$1" || true; }
cpu_ticks() { # utime+stime of a process and its children processes (nginx workers)
    local t=0 p
    for p in $(tree_pids "$1"); do
        t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0)))
    done
    echo "$t"
}
tree_rss() { local t=0 p; for p in $(tree_pids "$1"); do t=$((t + $(rss_kb "$p"))); done; echo "$t"; }
hz=$(getconf CLK_TCK)

# ---- the mock CA (one thread; verifies every request against vendor + operator roots) ----
ca_port=$(free_port)
"$B/bench_mockca" --listen "127.0.0.1:$ca_port" --cert "$pki/ca/srv.pem" --key "$pki/ca/srv.key" \
    --chain "$pki/operator/ica.pem" --issuer-cert "$pki/operator/ica.pem" \
    --issuer-key "$pki/operator/ica.key" --trust "$data/ca-trust.pem" --max-seconds 1200 \
    >"$work/mockca.log" 2>&1 &
ca_pid=$!
pids+=("$ca_pid")
wait_port "$ca_port"

redis_url=
if ((use_redis)); then
    rport=$(free_port)
    redis-server --port "$rport" --bind 127.0.0.1 --save '' --appendonly no >"$work/redis.log" 2>&1 &
    pids+=($!)
    wait_port "$rport"
    redis_url=redis://127.0.0.1:$rport/0
fi

# raproxy with `loops` loops and `workers` workers; sets ra_pid and ra_port.
ra_pid= ra_port=
start_raproxy() {
    local loops=$1 workers=$2 timeout_ms=${3:-30000} cpus=${4:-}
    stop_raproxy
    ra_port=$(free_port)
    cat >"$work/raproxy.yaml" <<EOF
loops: $loops
workers: $workers
log_level: warn
listeners:
  - address: 127.0.0.1:$ra_port
    tls: {cert: $pki/tls/server.pem, key: $pki/tls/server.key}
http:
  idle_timeout_ms: 120000
  header_timeout_ms: 60000
  max_connections: 100000
  max_connections_per_ip: 0 # the whole fleet comes from 127.0.0.1
upstream:
  url: http://127.0.0.1:$ca_port/
  timeout_ms: $timeout_ms
  max_connections: 64
  max_queue: 8192
ra: {cert: $pki/operator/ra.pem, key: $pki/operator/ra.key, chain: $pki/operator/ra.chain.pem}
domains:
  - name: manufacturer
    trust_anchors: [$pki/vendor/root.pem]
    intermediates: [$pki/vendor/ica.pem]
    allow: [ir, cr, p10cr, certConf]
    allowlist: $serials
    forward: reprotect
EOF
    [[ -n $redis_url ]] && printf 'redis:\n  url: %s\n' "$redis_url" >>"$work/raproxy.yaml"
    if [[ -n $cpus ]]; then # its workers pin themselves within the allowed set
        taskset -c "$cpus" "$build/raproxy" --config "$work/raproxy.yaml" \
            >"$work/raproxy-$loops-$workers.log" 2>&1 &
    else
        "$build/raproxy" --config "$work/raproxy.yaml" >"$work/raproxy-$loops-$workers.log" 2>&1 &
    fi
    ra_pid=$!
    pids+=("$ra_pid")
    wait_port "$ra_port"
}
stop_raproxy() {
    [[ -n $ra_pid ]] || return 0
    kill "$ra_pid" 2>/dev/null || true
    wait "$ra_pid" 2>/dev/null || true
    ra_pid=
}

ng_pid= ng_port=
start_nginx() {
    ng_port=$(free_port)
    mkdir -p "$work/nginx"
    cat >"$work/nginx/nginx.conf" <<EOF
worker_processes 1;
worker_rlimit_nofile $fd_limit;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log warn;
events { worker_connections $((fd_limit - 100)); }
http {
    access_log off;
    client_body_temp_path $work/nginx/body;
    proxy_temp_path $work/nginx/proxy;
    fastcgi_temp_path $work/nginx/fastcgi;
    uwsgi_temp_path $work/nginx/uwsgi;
    scgi_temp_path $work/nginx/scgi;
    keepalive_timeout 120s;
    keepalive_requests 10000000;
    upstream ca { server 127.0.0.1:$ca_port; keepalive 64; }
    server {
        listen 127.0.0.1:$ng_port ssl;
        ssl_certificate $pki/tls/server.pem;
        ssl_certificate_key $pki/tls/server.key;
        ssl_protocols TLSv1.2 TLSv1.3;
        location = /idle { return 204; }
        location / {
            proxy_pass http://ca;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
EOF
    nginx -e "$work/nginx/error.log" -p "$work/nginx" -c "$work/nginx/nginx.conf" \
        -g 'daemon off; master_process on;' >"$work/nginx/stdout.log" 2>&1 &
    ng_pid=$!
    pids+=("$ng_pid")
    wait_port "$ng_port"
}
stop_nginx() {
    [[ -n $ng_pid ]] || return 0
    kill -QUIT "$ng_pid" 2>/dev/null || true
    wait "$ng_pid" 2>/dev/null || true
    ng_pid=
}

fleet_cpus= # set: bench_fleet runs pinned to these CPUs (taskset -c)
fleet() { # fleet URL ARGS...: runs bench_fleet, prints its RESULT line
    local url=$1
    shift
    local pin=()
    [[ -n $fleet_cpus ]] && pin=(taskset -c "$fleet_cpus")
    timeout 300 "${pin[@]}" "$B/bench_fleet" --url "$url" --fleet "$fleet" \
        --chain "$pki/vendor/ica.pem" "$@" >"$work/fleet.out" 2>&1 || true
    cat "$work/fleet.out" >>"$work/fleet.log"
    grep '^RESULT' "$work/fleet.out" | tail -1 || echo "RESULT failed=1 eps=0 errors=fleet_failed"
}

# One measured run: target label, pid to account CPU to, then fleet args. Appends a row to
# $work/runs.tsv: target mode conc eps p50 p90 p99 p999 hs cpu_cores eps_per_cpu failed errors
run_one() {
    local target=$1 pid=$2 url=$3 mode=$4 conc=$5
    shift 5
    local c0 c1 t0 t1 r
    c0=$(cpu_ticks "$pid")
    t0=$(date +%s.%N)
    r=$(fleet "$url" --mode "$mode" --concurrency "$conc" --duration "$dur" --label "$target" "$@")
    t1=$(date +%s.%N)
    c1=$(cpu_ticks "$pid")
    local cores eps epc
    cores=$(awk -v a="$c0" -v b="$c1" -v h="$hz" -v s="$t0" -v e="$t1" 'BEGIN {printf "%.2f", (b - a) / h / (e - s)}')
    eps=$(field eps "$r")
    epc=$(awk -v e="$eps" -v c="$cores" 'BEGIN {printf "%.0f", (c > 0 ? e / c : 0)}')
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$target" "$mode" "$conc" "$eps" \
        "$(field p50 "$r")" "$(field p90 "$r")" "$(field p99 "$r")" "$(field p999 "$r")" \
        "$(field hs "$r")" "$cores" "$epc" "$(field failed "$r")" "$(field errors "$r")" \
        >>"$work/runs.tsv"
    log "$target $mode c=$conc: $eps enrollments/s, p99 $(field p99 "$r") us, proxy CPU $cores cores, errors $(field errors "$r")"
}

# ---- 9. storm against a slow CA (delayed delivery on, then off) ----
# storm_run on|off: a fresh mock CA capped at storm_cap/s, a fresh Redis, raproxy (1 loop,
# 2 workers) with upstream.rate at the cap; storm_n devices at once (storm mode: a TLS
# connection per message, so a waiting device hangs up between polls). Appends a row to
# $work/storm.tsv: dd n ok failed p50_us p99_us ca_peak_s ca_ip dup_txid throttled waited
# polls max_waiting bytes_per_waiting secs errors
storm_run() {
    local dd=$1 enabled=false
    [[ $dd == on ]] && enabled=true
    local cport rport sport
    cport=$(free_port) rport=$(free_port) sport=$(free_port)
    "$B/bench_mockca" --listen "127.0.0.1:$cport" --cert "$pki/ca/srv.pem" --key "$pki/ca/srv.key" \
        --chain "$pki/operator/ica.pem" --issuer-cert "$pki/operator/ica.pem" \
        --issuer-key "$pki/operator/ica.key" --trust "$data/ca-trust.pem" --rate "$storm_cap" \
        --max-seconds "$((STORM_MAX_S + 60))" >"$work/storm-ca-$dd.log" 2>&1 &
    local sca=$!
    pids+=("$sca")
    redis-server --port "$rport" --bind 127.0.0.1 --save '' --appendonly no \
        >"$work/storm-redis-$dd.log" 2>&1 &
    local srd=$!
    pids+=("$srd")
    wait_port "$cport"
    wait_port "$rport"
    cat >"$work/storm-$dd.yaml" <<YAML
loops: 1
workers: 2
log_level: warn
listeners:
  - address: 127.0.0.1:$sport
    tls: {cert: $pki/tls/server.pem, key: $pki/tls/server.key}
http:
  idle_timeout_ms: 120000
  header_timeout_ms: 60000
  max_connections: 100000
  max_connections_per_ip: 0 # the whole fleet comes from 127.0.0.1
  # TLS handshakes run on the loop: a burst of 1024 (the default) makes one loop iteration
  # last seconds on 2 shared cores, and Redis commands wait that long to be written
  max_handshakes: $STORM_HANDSHAKES
redis: {url: "redis://127.0.0.1:$rport/0", timeout_ms: $STORM_REDIS_TIMEOUT_MS}
upstream:
  url: http://127.0.0.1:$cport/
  timeout_ms: 10000
  max_connections: 64
  max_queue: 8192
  max_in_flight: $STORM_IN_FLIGHT
  rate: {rate: $storm_cap/s, burst: 1}
  delayed_delivery: {enabled: $enabled, max_wait_s: 3600, check_after_s: $STORM_CHECK_AFTER_S, check_after_jitter_s: $STORM_JITTER_S, max_waiting: $((storm_n + 1000))}
ra: {cert: $pki/operator/ra.pem, key: $pki/operator/ra.key, chain: $pki/operator/ra.chain.pem}
domains:
  - name: manufacturer
    trust_anchors: [$pki/vendor/root.pem]
    intermediates: [$pki/vendor/ica.pem]
    allow: [ir, cr, p10cr, certConf, pollReq]
    allowlist: $serials
    forward: reprotect
YAML
    "$build/raproxy" --config "$work/storm-$dd.yaml" >"$work/storm-raproxy-$dd.log" 2>&1 &
    local sra=$!
    pids+=("$sra")
    wait_port "$sport"
    rcli() { redis-cli -p "$rport" "$@" 2>/dev/null; }
    local base
    base=$(rcli INFO memory | awk -F: '/^used_memory:/ {print $2 + 0}')
    log "storm, delayed delivery $dd: $storm_n devices at once, CA capped at $storm_cap/s"
    timeout "$STORM_MAX_S" "$B/bench_fleet" --url "https://127.0.0.1:$sport/.well-known/cmp/p/manufacturer" \
        --fleet "$fleet" --chain "$pki/vendor/ica.pem" --mode storm --concurrency "$storm_n" \
        --requests "$storm_n" --duration "$STORM_MAX_S" --threads 2 \
        --timeout-ms "$STORM_TIMEOUT_MS" --label "storm-dd-$dd" >"$work/storm-fleet-$dd.out" 2>&1 &
    local sf=$!
    # Redis memory per waiting request: at the sample with the most requests waiting
    local maxw=0 maxmem=0 w m
    while kill -0 "$sf" 2>/dev/null; do
        w=$(rcli ZCARD 'raproxy:dd:{dd}:q')
        m=$(rcli INFO memory | awk -F: '/^used_memory:/ {print $2 + 0}')
        if [[ ${w:-0} -gt $maxw ]]; then maxw=$w maxmem=$m; fi
        sleep 0.5
    done
    wait "$sf" || true
    local r
    r=$(grep '^RESULT' "$work/storm-fleet-$dd.out" || echo "RESULT ok=0 failed=$storm_n errors=fleet_failed")
    kill "$sra" 2>/dev/null || true
    wait "$sra" 2>/dev/null || true
    kill "$sca" 2>/dev/null || true
    wait "$sca" 2>/dev/null || true
    kill "$srd" 2>/dev/null || true
    wait "$srd" 2>/dev/null || true
    local ca
    ca=$(grep '^MOCKCA' "$work/storm-ca-$dd.log" || echo "MOCKCA")
    local per=n/a
    ((maxw > 0)) && per=$(((maxmem - base) / maxw))
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$dd" "$storm_n" \
        "$(field ok "$r")" "$(field failed "$r")" "$(field p50 "$r")" "$(field p99 "$r")" \
        "$(field peak_ip_s "$ca")" "$(field ip "$ca")" "$(field dup_txid "$ca")" \
        "$(field throttled "$ca")" "$(field waited "$r")" "$(field polls "$r")" "$maxw" "$per" \
        "$(field secs "$r")" "$(field errors "$r")" >>"$work/storm.tsv"
    log "storm, delayed delivery $dd: ok $(field ok "$r"), failed $(field failed "$r"), CA peak $(field peak_ip_s "$ca")/s, p50 $(field p50 "$r") us, p99 $(field p99 "$r") us, most waiting $maxw, $per bytes of Redis each"
}
storm_section() { # the report's section for $work/storm.tsv
    echo "## Storm against a slow CA"
    echo
    echo "$storm_n devices enroll at once (bench_fleet storm mode: a TLS connection per message;"
    echo "a device answered \`waiting\` polls after each \`checkAfter\` on a new connection) through"
    echo "raproxy (1 loop, 2 workers) and Redis into a mock CA that issues at most $storm_cap"
    echo "certificates/s (HTTP 503 beyond). raproxy: \`upstream.max_in_flight: $STORM_IN_FLIGHT\`,"
    echo "\`upstream.rate: {rate: $storm_cap/s, burst: 1}\`, \`delayed_delivery\` check_after_s $STORM_CHECK_AFTER_S"
    echo "+ jitter $STORM_JITTER_S s, \`http.max_handshakes: $STORM_HANDSHAKES\`, \`redis.timeout_ms: $STORM_REDIS_TIMEOUT_MS\`."
    echo "A device gives up on one answer after $((STORM_TIMEOUT_MS / 1000)) s and does not retry a failure."
    echo "Time-to-certificate runs from the device's first connection to its"
    echo "pkiConf, waiting included. Redis memory per waiting request: used_memory above the"
    echo "empty Redis at the sample (every 0.5 s) with the most requests queued, divided by them."
    echo
    echo "| delayed delivery | devices | completed | failed | CA peak/s (cap $storm_cap) | CA issued | sent twice | CA 503s | answered waiting | pollReqs | most waiting | Redis B/waiting | p50 s | p99 s | run s | errors |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
    awk -F'\t' '{printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %.2f | %.2f | %.1f | %s |\n",
        $1, $2, $3, $4, $7, $8, $9, $10, $11, $12, $13, $14, $5 / 1e6, $6 / 1e6, $15, $16}' "$work/storm.tsv"
}
storm_all() {
    : >"$work/storm.tsv"
    storm_run on
    storm_run off
}
if ((storm_only)); then
    storm_all
    stamp=$(date +%Y-%m-%d-%H%M)
    host=$(hostname -s 2>/dev/null || echo host)
    mkdir -p "$src/bench/results"
    out=$src/bench/results/$stamp-$host-storm
    {
        echo "# raproxy storm against a slow CA — $stamp on $host"
        echo
        echo "\`bench/run.sh --storm-only --storm-n $storm_n --storm-cap $storm_cap --storm-check-after $storm_check_after --storm-jitter $storm_jitter\`."
        echo "CPU: $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo),"
        echo "$(nproc) cores shared by the fleet, raproxy, Redis and the mock CA, on loopback. Load average"
        echo "(1/5/15 min) at the end: $(cut -d' ' -f1-3 /proc/loadavg)."
        echo
        storm_section
    } >"$out.md"
    for dd in on off; do cp "$work/storm-fleet-$dd.out" "$out-fleet-$dd.out" 2>/dev/null || true; done
    log "report: $out.md"
    echo "$out.md"
    exit 0
fi

t_start=$(date +%s)
load_start=$(cut -d' ' -f1-3 /proc/loadavg)
: >"$work/runs.tsv"

# ---- 1. ceiling ----
log "crypto ceiling"
"$B/bench_ceiling" --pki "$pki" --fleet "$fleet" --seconds "$ceil_s" >"$work/ceiling.out"
ceiling=$(grep '^CEILING' "$work/ceiling.out")
ceil_storm=$(field storm_eps "$ceiling") ceil_keep=$(field keepalive_eps "$ceiling")
ceil_fwd=$(field forward_storm_eps "$ceiling")

# ---- 2. sweep ----
start_raproxy 1 1
ra_url=https://127.0.0.1:$ra_port/.well-known/cmp/p/manufacturer
fleet "$ra_url" --mode keepalive --concurrency 8 --duration 1 >/dev/null # warm-up
for mode in storm keepalive; do
    for c in "${levels[@]}"; do
        run_one raproxy-1x1 "$ra_pid" "$ra_url" "$mode" "$c"
    done
done
if ((use_perf)); then
    log "perf profile of raproxy, storm, c=${levels[-1]}"
    (sleep 1 && timeout 20 perf record -F 499 -g -p "$ra_pid" -o "$work/perf.data" -- sleep 3 \
        >/dev/null 2>&1) &
    perf_pid=$!
    fleet "$ra_url" --mode storm --concurrency "${levels[-1]}" --duration 5 --label perf >/dev/null
    wait "$perf_pid" || true
    perf report -i "$work/perf.data" --stdio --no-children -g none --sort dso,symbol 2>/dev/null |
        awk '$1 ~ /^[0-9.]+%$/ {printf "%8s  %-18s %s\n", $1, $2, $4}' | head -25 >"$work/perf.txt" || true
fi
if ((use_nginx)); then
    start_nginx
    ng_url=https://127.0.0.1:$ng_port/
    fleet "$ng_url" --mode keepalive --concurrency 8 --duration 1 >/dev/null
    for mode in storm keepalive; do
        for c in "${levels[@]}"; do
            run_one nginx "$ng_pid" "$ng_url" "$mode" "$c"
        done
    done
    stop_nginx
fi

best_level() { # the concurrency with the highest throughput for target+mode
    awk -F'\t' -v t="$1" -v m="$2" '$1 == t && $2 == m && $4 + 0 > best {best = $4 + 0; c = $3}
        END {print c ? c : 16}' "$work/runs.tsv"
}
peak() { awk -F'\t' -v t="$1" -v m="$2" '$1 == t && $2 == m && $4 + 0 > b {b = $4 + 0} END {print b + 0}' "$work/runs.tsv"; }

# ---- 3. scaling: 2 loops + 2 workers ----
start_raproxy 2 2
ra_url=https://127.0.0.1:$ra_port/.well-known/cmp/p/manufacturer
for mode in storm keepalive; do
    run_one raproxy-2x2 "$ra_pid" "$ra_url" "$mode" "$(best_level raproxy-1x1 "$mode")" --threads 2
done

# raproxy's own time per enrollment, from its exchange log lines from line FROM on: for each
# transaction, the sum over its exchanges (ir + certConf) of duration_ms - upstream_ms, i.e.
# the time a request spent inside raproxy (admission, verification, signing, answer) without
# the CA's part. Prints "p50_us p99_us transactions". The external figure below also counts
# the load generator's own CPU sharing, which on a small machine is the larger part.
own_time() {
    tail -n +"$2" "$1" | awk '
        /"event":"exchange"/ && /"upstream_ms":/ {
            t = $0; sub(/.*"txid":"/, "", t); sub(/".*/, "", t)
            d = $0; sub(/.*"duration_ms":/, "", d); sub(/[,}].*/, "", d)
            u = $0; sub(/.*"upstream_ms":/, "", u); sub(/[,}].*/, "", u)
            own[t] += d - u; n[t]++
        }
        END { for (t in own) if (n[t] == 2) printf "%.0f\n", own[t] * 1000 }' |
        sort -n | awk '{ v[NR] = $1 }
            END {
                if (NR == 0) { print "0 0 0"; exit }
                a = int(NR * 0.50 + 0.999999); b = int(NR * 0.99 + 0.999999) # nearest rank
                if (a < 1) a = 1
                if (b < 1) b = 1
                printf "%d %d %d\n", v[a], v[b], NR
            }'
}

# ---- 4. latency at half of the keep-alive peak, pinned ----
# raproxy (1 loop + 1 worker) alone on the last core; the fleet and the mock CA on the others.
# The peak is measured pinned too, and the direct run uses the same cores as the fleet did.
ncpu=$(nproc)
pinned=0 ra_cpu= other_cpus=
if ((ncpu >= 2)) && command -v taskset >/dev/null; then
    pinned=1 ra_cpu=$((ncpu - 1)) other_cpus=0-$((ncpu - 2))
    taskset -a -p -c "$other_cpus" "$ca_pid" >/dev/null
    fleet_cpus=$other_cpus
fi
start_raproxy 1 1 30000 "$ra_cpu"
ra_url=https://127.0.0.1:$ra_port/.well-known/cmp/p/manufacturer
if ((pinned)); then
    log "pinned: raproxy on CPU $ra_cpu, fleet and mock CA on CPU $other_cpus"
    run_one raproxy-pinned "$ra_pid" "$ra_url" keepalive "$(best_level raproxy-1x1 keepalive)"
    half=$(awk -v p="$(peak raproxy-pinned keepalive)" 'BEGIN {printf "%d", (p / 2 > 1 ? p / 2 : 1)}')
else
    half=$(awk -v p="$(peak raproxy-1x1 keepalive)" 'BEGIN {printf "%d", (p / 2 > 1 ? p / 2 : 1)}')
fi
log "latency at half of peak: $half enrollments/s, open loop"
ra_log_from=$(($(wc -l <"$work/raproxy-1-1.log") + 1))
lat_ra=$(fleet "$ra_url" --mode keepalive --concurrency 256 --rate "$half" --duration "$dur" --label half-raproxy)
own_ra=$(own_time "$work/raproxy-1-1.log" "$ra_log_from")
lat_ca=$(fleet "http://127.0.0.1:$ca_port/" --mode keepalive --concurrency 256 --rate "$half" --duration "$dur" --label half-direct)
if ((pinned)); then
    taskset -a -p -c "0-$((ncpu - 1))" "$ca_pid" >/dev/null
    fleet_cpus=
fi

# ---- 5. memory per idle TLS connection, and after a slowloris wave ----
idle_rss() { # idle_rss PID URL [bench_fleet idle options] → "established base_kb loaded_kb after_kb"
    local pid=$1 url=$2 base loaded after est
    shift 2
    base=$(tree_rss "$pid")
    timeout 300 "$B/bench_fleet" --url "$url" --fleet "$fleet" --idle "$idle_n" --hold "$hold" \
        --concurrency 64 --duration 60 --timeout-ms 20000 "$@" >"$work/idle.out" 2>&1 &
    local f=$!
    for _ in $(seq 600); do
        grep -q '^IDLE' "$work/idle.out" 2>/dev/null && break
        sleep 0.1
    done
    sleep 1
    loaded=$(tree_rss "$pid")
    wait "$f" || true
    sleep 3 # the connections are gone: what is left of them
    after=$(tree_rss "$pid")
    cat "$work/idle.out" >>"$work/fleet.log"
    est=$(field idle_ok "$(grep '^RESULT' "$work/idle.out" || true)")
    echo "${est:-0} $base $loaded $after"
}
# Each figure from a fresh process: the handshake only; one keep-alive request (GET /idle:
# raproxy answers 404, nginx 204) then idle; a slowloris wave (handshake, then a request
# that never ends: held until the client gives up).
log "memory: $idle_n idle TLS connections to raproxy (handshake; then a keep-alive request)"
start_raproxy 1 1
read -r ra_idle ra_base ra_loaded _ < <(idle_rss "$ra_pid" "https://127.0.0.1:$ra_port/idle")
start_raproxy 1 1
read -r ra_idle_r ra_base_r ra_loaded_r _ < <(idle_rss "$ra_pid" "https://127.0.0.1:$ra_port/idle" --idle-request)
log "memory: a slowloris wave of $idle_n connections against raproxy"
start_raproxy 1 1
read -r ra_slow ra_base_s ra_loaded_s ra_after_s < <(idle_rss "$ra_pid" "https://127.0.0.1:$ra_port/idle" --idle-partial)
ng_idle=0 ng_base=0 ng_loaded=0 ng_idle_r=0 ng_base_r=0 ng_loaded_r=0
ng_slow=0 ng_base_s=0 ng_loaded_s=0 ng_after_s=0
if ((use_nginx)); then
    log "memory: $idle_n idle TLS connections to nginx, then the same after a request, a wave"
    start_nginx
    read -r ng_idle ng_base ng_loaded _ < <(idle_rss "$ng_pid" "https://127.0.0.1:$ng_port/idle")
    stop_nginx
    start_nginx
    read -r ng_idle_r ng_base_r ng_loaded_r _ < <(idle_rss "$ng_pid" "https://127.0.0.1:$ng_port/idle" --idle-request)
    stop_nginx
    start_nginx
    read -r ng_slow ng_base_s ng_loaded_s ng_after_s < <(idle_rss "$ng_pid" "https://127.0.0.1:$ng_port/idle" --idle-partial)
    stop_nginx
fi

# ---- 5b. handing finished crypto jobs back to the loop ----
log "worker hand-back: wake-ups and CPU per job (bench_wakeup)"
: >"$work/wakeup.txt"
for k in 4 32 256; do
    grep '^RESULT' <("$B/bench_wakeup" -n "$((quick ? 20000 : 100000))" -k "$k" 2>/dev/null) \
        >>"$work/wakeup.txt" || true
done

# ---- 6. stall ----
log "stall: mock CA stops answering at ${STALL_AT}s for ${STALL_LEN}s (upstream timeout ${UPSTREAM_TIMEOUT_MS} ms)"
start_raproxy 1 1 "$UPSTREAM_TIMEOUT_MS"
ra_url=https://127.0.0.1:$ra_port/.well-known/cmp/p/manufacturer
timeout 120 "$B/bench_fleet" --url "$ra_url" --fleet "$fleet" --chain "$pki/vendor/ica.pem" \
    --mode keepalive --concurrency 32 --duration "$stall_run" --timeout-ms 10000 \
    --timeline "$work/stall-timeline.txt" --label stall >"$work/stall.out" 2>&1 &
sf=$!
: >"$work/stall-rss.txt"
for i in $(seq 0 $((stall_run * 2))); do
    sec=$(awk -v i="$i" 'BEGIN {printf "%.1f", i / 2}')
    [[ $sec == "$STALL_AT.0" ]] && kill -USR1 "$ca_pid"
    [[ $sec == "$((STALL_AT + STALL_LEN)).0" ]] && kill -USR2 "$ca_pid"
    echo "$sec $(rss_kb "$ra_pid")" >>"$work/stall-rss.txt"
    sleep 0.5
done
kill -USR2 "$ca_pid"
wait "$sf" || true
stall=$(grep '^RESULT' "$work/stall.out" || echo "RESULT errors=fleet_failed")
stop_raproxy

storm_all
t_total=$(($(date +%s) - t_start))
load_end=$(cut -d' ' -f1-3 /proc/loadavg)

# ---- report ----
stamp=$(date +%Y-%m-%d-%H%M)
host=$(hostname -s 2>/dev/null || echo host)
out=$src/bench/results/$stamp-$host
mkdir -p "$src/bench/results"
cpu_model=$(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)
mockca_stats=$(grep '^MOCKCA' "$work/mockca.log" || true)
kill "$ca_pid" 2>/dev/null && sleep 0.5
mockca_stats=$(grep '^MOCKCA' "$work/mockca.log" || echo "$mockca_stats")

if command -v gnuplot >/dev/null; then
    for t in raproxy-1x1 nginx; do
        for m in storm keepalive; do
            awk -F'\t' -v t="$t" -v m="$m" '$1 == t && $2 == m {print $3, $4, $5 / 1000, $7 / 1000, $8 / 1000}' \
                "$work/runs.tsv" >"$work/$t-$m.dat"
        done
    done
    gnuplot <<EOF 2>"$work/gnuplot.err" || log "gnuplot failed: $(head -3 "$work/gnuplot.err")"
set terminal pngcairo size 900,540 noenhanced
set output "$out-throughput.png"
set title "Enrollments/s vs concurrency ($(nproc) cores shared by fleet, proxy and mock CA)"
set xlabel "concurrent devices"; set ylabel "enrollments/s"; set logscale x 2; set key top left; set grid
set yrange [0:*]
plot "$work/raproxy-1x1-storm.dat" u 1:2 w lp lw 2 t "raproxy storm", \
     "$work/raproxy-1x1-keepalive.dat" u 1:2 w lp lw 2 t "raproxy keep-alive", \
     "$work/nginx-storm.dat" u 1:2 w lp dt 2 t "nginx storm", \
     "$work/nginx-keepalive.dat" u 1:2 w lp dt 2 t "nginx keep-alive"
set output "$out-latency.png"
set title "raproxy enrollment latency (ir + certConf) vs concurrency"
set ylabel "ms"; set logscale y 10; set yrange [*:*]
plot "$work/raproxy-1x1-storm.dat" u 1:3 w lp t "storm p50", \
     "$work/raproxy-1x1-storm.dat" u 1:4 w lp t "storm p99", \
     "$work/raproxy-1x1-storm.dat" u 1:5 w lp t "storm p99.9", \
     "$work/raproxy-1x1-keepalive.dat" u 1:3 w lp dt 2 t "keep-alive p50", \
     "$work/raproxy-1x1-keepalive.dat" u 1:4 w lp dt 2 t "keep-alive p99", \
     "$work/raproxy-1x1-keepalive.dat" u 1:5 w lp dt 2 t "keep-alive p99.9"
EOF
fi

ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf (b > 0 ? "%.2f" : "n/a"), (b > 0 ? a / b : 0)}'; }
floor_eps() { # nginx enrollments per CPU-second → floor enrollments per CPU-second
    awk -v n="$1" -v k="$ceil_keep" 'BEGIN {
        if (n + 0 <= 0 || k + 0 <= 0) { print "n/a"; exit }
        printf "%.0f", 1e6 / (1e6 / n + 1e6 / k) }'
}
best_row() { awk -F'\t' -v t="$1" -v m="$2" '$1 == t && $2 == m && $4 + 0 > b {b = $4 + 0; r = $0} END {print r}' "$work/runs.tsv"; }
col() { cut -f"$2" <<<"$1"; }
{
    echo "# raproxy load test — $stamp on $host"
    echo
    echo "\`bench/run.sh$( ((quick)) && echo ' --quick')$( ((use_redis)) && echo ' --redis')\`, ${t_total} s. CPU: $cpu_model, $(nproc) cores shared by"
    echo "the fleet, raproxy (or nginx) and the mock CA, all on loopback. $wolfssl_info."
    echo "Fleet: $fleet_n vendor devices; every enrollment is a fresh ir (new key from a pool of 64,"
    echo "POP, protection, new transactionID/nonces) + certConf. \"storm\": a new TLS connection per"
    echo "enrollment (full handshake); \"keep-alive\": one connection per device slot."
    echo "Mock CA: $mockca_stats (by_ra: requests it saw protected by the RA certificate)."
    echo "Load average (1/5/15 min) at the start: $load_start, at the end: $load_end — anything"
    echo "above $(nproc) means other work shared these cores and every figure below is lower for it."
    echo
    echo "## Crypto ceiling (bench_ceiling, one core)"
    echo
    echo '```'
    grep -v '^CEILING' "$work/ceiling.out"
    echo '```'
    echo
    echo "## Throughput and latency (1 loop + 1 worker; nginx: 1 worker process)"
    echo
    echo "Latency is per enrollment (ir + certConf, and the handshake in storm mode), in ms."
    echo "*proxy CPU* is the CPU time the proxy used per second of the run (cores); *per CPU-s* is"
    echo "enrollments per CPU-second of the proxy, the figure comparable to the per-core ceiling."
    echo
    echo "| target | mode | devices | enroll/s | p50 | p90 | p99 | p99.9 | handshakes/s | proxy CPU | per CPU-s | failed | errors |"
    echo "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
    awk -F'\t' '{printf "| %s | %s | %s | %s | %.1f | %.1f | %.1f | %.1f | %s | %s | %s | %s | %s |\n",
        $1, $2, $3, $4, $5 / 1000, $6 / 1000, $7 / 1000, $8 / 1000, $9, $10, $11, $12, $13}' "$work/runs.tsv"
    echo
    echo "![throughput]($stamp-$host-throughput.png)"
    echo "![latency]($stamp-$host-latency.png)"
    echo
    echo "## Against the targets"
    echo
    rs=$(best_row raproxy-1x1 storm) rk=$(best_row raproxy-1x1 keepalive)
    ns=$(best_row nginx storm) nk=$(best_row nginx keepalive)
    s2=$(best_row raproxy-2x2 storm) k2=$(best_row raproxy-2x2 keepalive)
    echo "| figure | storm | keep-alive | target |"
    echo "|---|---:|---:|---|"
    echo "| raproxy peak enroll/s (1+1) | $(col "$rs" 4) | $(col "$rk" 4) | |"
    echo "| ceiling enroll/s/core (full RA work) | $ceil_storm | $ceil_keep | |"
    echo "| raproxy per CPU-s / ceiling | $(ratio "$(col "$rs" 11)" "$ceil_storm") | $(ratio "$(col "$rk" 11)" "$ceil_keep") | ≥ 0.7 storm |"
    # The floor: what a plain TLS proxy (nginx) spends per enrollment plus the RA's own
    # crypto (the ceiling's keep-alive cost: chain, protections, POP, RA signatures; the
    # handshake is already in nginx's figure), as enrollments per CPU-second.
    floor_s=$(floor_eps "$(col "$ns" 11)") floor_k=$(floor_eps "$(col "$nk" 11)")
    echo "| floor enroll/CPU-s (nginx + RA crypto) | $floor_s | $floor_k | |"
    echo "| raproxy per CPU-s / floor (nginx + RA crypto) | $(ratio "$(col "$rs" 11)" "$floor_s") | $(ratio "$(col "$rk" 11)" "$floor_k") | ≥ 1.0 |"
    echo "| raproxy per CPU-s / forward-only ceiling (TLS only) | $(ratio "$(col "$rs" 11)" "$ceil_fwd") | | |"
    echo "| nginx peak enroll/s | $(col "$ns" 4) | $(col "$nk" 4) | |"
    echo "| raproxy / nginx (throughput) | $(ratio "$(col "$rs" 4)" "$(col "$ns" 4)") | $(ratio "$(col "$rk" 4)" "$(col "$nk" 4)") | |"
    echo "| raproxy / nginx (per CPU-s) | $(ratio "$(col "$rs" 11)" "$(col "$ns" 11)") | $(ratio "$(col "$rk" 11)" "$(col "$nk" 11)") | |"
    echo "| 2 loops + 2 workers enroll/s | $(col "$s2" 4) | $(col "$k2" 4) | |"
    echo "| scaling 2+2 / 1+1 | $(ratio "$(col "$s2" 4)" "$(col "$rs" 4)") | $(ratio "$(col "$k2" 4)" "$(col "$rk" 4)") | |"
    echo
    p99r=$(field p99 "$lat_ra") p99d=$(field p99 "$lat_ca")
    if ((pinned)); then
        rp=$(best_row raproxy-pinned keepalive)
        echo "**Latency at half of the keep-alive peak, pinned** (taskset: raproxy alone on CPU $ra_cpu,"
        echo "the fleet and the mock CA on CPU $other_cpus; pinned peak $(col "$rp" 4) enrollments/s at"
        echo "$(col "$rp" 3) devices, so $half enrollments/s, open loop, latency from the scheduled start):"
    else
        echo "**Latency at half of the keep-alive peak, NOT pinned** (one CPU: taskset cannot separate"
        echo "the processes; $half enrollments/s, open loop, latency from the scheduled start):"
    fi
    echo "through raproxy p50 $(field p50 "$lat_ra") us, p99 $p99r us; straight to the mock CA"
    echo "(plain HTTP) p50 $(field p50 "$lat_ca") us, p99 $p99d us. Added p99 per enrollment (two exchanges):"
    echo "**$(awk -v a="$p99r" -v b="$p99d" 'BEGIN {printf "%.2f ms", (a - b) / 1000}')** (target < 1 ms)."
    echo "Errors: raproxy $(field errors "$lat_ra"), direct $(field errors "$lat_ca")."
    read -r own50 own99 ownn <<<"$own_ra"
    echo "raproxy's own time per enrollment in that run (its exchange log: duration − upstream,"
    echo "ir + certConf, $ownn transactions): p50 $own50 us, **p99 $own99 us**. The difference between"
    echo "the two figures is the load generator and the mock CA sharing their core(s)."
    echo
    echo "**Memory per idle TLS connection** ($idle_n requested, fd limit $fd_limit; RSS of the"
    echo "process and its children, each row a fresh process):"
    echo
    echo "| proxy | connections | held | RSS before | RSS with them | per connection | target |"
    echo "|---|---|---:|---:|---:|---:|---|"
    per() { awk -v n="$1" -v a="$2" -v b="$3" 'BEGIN {printf (n > 0 ? "%.1f KB" : "n/a"), (n > 0 ? (b - a) / n : 0)}'; }
    echo "| raproxy | after the handshake | $ra_idle | $ra_base KB | $ra_loaded KB | $(per "$ra_idle" "$ra_base" "$ra_loaded") | ≤ 12 KB |"
    echo "| raproxy | after one keep-alive request | $ra_idle_r | $ra_base_r KB | $ra_loaded_r KB | $(per "$ra_idle_r" "$ra_base_r" "$ra_loaded_r") | ≤ 12 KB |"
    echo "| raproxy | slowloris (half a request) | $ra_slow | $ra_base_s KB | $ra_loaded_s KB | $(per "$ra_slow" "$ra_base_s" "$ra_loaded_s") | |"
    if ((use_nginx)); then
        echo "| nginx (master + worker) | after the handshake | $ng_idle | $ng_base KB | $ng_loaded KB | $(per "$ng_idle" "$ng_base" "$ng_loaded") | |"
        echo "| nginx (master + worker) | after one keep-alive request | $ng_idle_r | $ng_base_r KB | $ng_loaded_r KB | $(per "$ng_idle_r" "$ng_base_r" "$ng_loaded_r") | |"
        echo "| nginx (master + worker) | slowloris (half a request) | $ng_slow | $ng_base_s KB | $ng_loaded_s KB | $(per "$ng_slow" "$ng_base_s" "$ng_loaded_s") | |"
    fi
    echo
    echo "**RSS after the slowloris wave** (3 s after its $idle_n connections closed):"
    echo "raproxy $ra_after_s KB against $ra_base_s KB before it, $(ratio "$ra_after_s" "$ra_base_s")× (target ≤ 2×)$( ((use_nginx)) && echo "; nginx $ng_after_s KB against $ng_base_s KB, $(ratio "$ng_after_s" "$ng_base_s")×")."
    echo
    echo "**Handing finished crypto jobs back to the loop** (bench_wakeup: 2 workers, empty jobs,"
    echo "so the hand-back is all there is; one wake-up collects every job that finishes while the"
    echo "loop collects):"
    echo
    echo "| jobs in flight | jobs/s | CPU µs per job (process) | loop CPU µs per job | loop wake-ups per job |"
    echo "|---:|---:|---:|---:|---:|"
    while read -r line; do
        echo "| $(field window "$line") | $(field jobs_per_s "$line") | $(field cpu_us_per_job "$line") | $(field loop_cpu_us_per_job "$line") | $(field wakeups_per_job "$line") |"
    done <"$work/wakeup.txt"
    echo
    echo "## Stall of the mock CA"
    echo
    echo "Keep-alive load, 32 devices, ${stall_run} s; the mock CA holds every request from ${STALL_AT} s to"
    echo "$((STALL_AT + STALL_LEN)) s; raproxy's upstream timeout is ${UPSTREAM_TIMEOUT_MS} ms. Result: ok $(field ok "$stall"),"
    echo "failed $(field failed "$stall"), errors \`$(field errors "$stall")\`."
    echo "raproxy RSS during the run: min $(awk '{print $2}' "$work/stall-rss.txt" | sort -n | head -1) KB,"
    echo "max $(awk '{print $2}' "$work/stall-rss.txt" | sort -n | tail -1) KB."
    echo
    echo "| second | enrollments ok | failed | raproxy RSS KB |"
    echo "|---:|---:|---:|---:|"
    awk 'NR == FNR {if ($1 ~ /\.0$/) r[int($1)] = $2; next} /^[0-9]/ && $1 < '"$stall_run"' {print "| " $1 " | " $2 " | " $3 " | " r[$1] " |"}' \
        "$work/stall-rss.txt" "$work/stall-timeline.txt"
    echo
    storm_section
    if [[ -s $work/perf.txt ]]; then
        echo
        echo "## Where raproxy's time goes (perf, storm, ${levels[-1]} devices, top symbols, self time)"
        echo
        echo '```'
        cat "$work/perf.txt"
        echo '```'
    fi
} >"$out.md"
cp "$work/fleet.log" "$out-fleet.log" 2>/dev/null || true
log "report: $out.md"
echo "$out.md"
