# Shared helpers for the bench/ scripts (bench/run, bench/growth). Source it after
# `set -euo pipefail`; set BENCH_TAG first to change the log prefix (default "bench").
# shellcheck shell=bash

log() { printf '[%s] %s\n' "${BENCH_TAG:-bench}" "$*" >&2; }
die() { printf '[%s] error: %s\n' "${BENCH_TAG:-bench}" "$*" >&2; exit 1; }

# need_tools TOOL... : install the missing ones from Debian (tool name == package name).
need_tools() {
    local tool missing=() sudo=""
    for tool in "$@"; do
        command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
    done
    ((${#missing[@]})) || return 0
    log "installing ${missing[*]} (Debian packages)"
    if [[ $(id -u) -ne 0 ]]; then
        command -v sudo >/dev/null 2>&1 || die "need root or sudo to install ${missing[*]}"
        sudo=sudo
    fi
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
}

# Loopback TCP ports.
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
pick_port() {
    local p
    for _ in $(seq 1 100); do
        p=$((20000 + RANDOM % 40000))
        if port_free "$p"; then echo "$p"; return 0; fi
    done
    return 1
}

# parse_wrk FILE (wrk --latency output) prints: rps p50_ms p99_ms requests non2xx socket_errors
parse_wrk() {
    awk '
    function to_ms(s,   n, u) {
        n = s; sub(/[a-zA-Z]+$/, "", n)
        u = s; sub(/^[0-9.eE+-]+/, "", u)
        if (u == "us") return n / 1000
        if (u == "ms") return n + 0
        if (u == "s" || u == "") return n * 1000
        if (u == "m") return n * 60000
        if (u == "h") return n * 3600000
        return "nan"
    }
    BEGIN { rps = ""; p50 = ""; p99 = ""; req = ""; non2xx = 0; sock = 0 }
    /^[ \t]*50(\.0+)?%[ \t]/ { p50 = to_ms($2) }
    /^[ \t]*99(\.0+)?%[ \t]/ { p99 = to_ms($2) }
    /^Requests\/sec:/        { rps = $2 }
    / requests in /          { req = $1 }
    /Non-2xx or 3xx responses:/ { non2xx = $NF }
    /Socket errors:/ {
        gsub(/,/, "")
        for (i = 1; i < NF; i++) if ($i ~ /^(connect|read|write|timeout)$/) sock += $(i + 1)
    }
    END {
        if (rps == "" || p50 == "" || p99 == "" || req == "") exit 1
        printf "%s %s %s %s %s %s\n", rps, p50, p99, req, non2xx, sock
    }' "$1"
}
