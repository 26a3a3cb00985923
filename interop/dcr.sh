#!/usr/bin/env bash
# Dynamic client registration (RFC 7591) and its management protocol
# (RFC 7592) interoperability check against a running Tether server, with
# panva's openid-client and jose for the registrations and plain fetch for the
# management calls and the negative probes (see dcr.mjs).
#
# Usage: interop/dcr.sh DATA_DIR ISSUER
#   DATA_DIR  the running server's data directory (its SQLite database is
#             used by the admin CLI; its TLS CA at DATA_DIR/tls/ca.pem is
#             trusted by Node through NODE_EXTRA_CA_CERTS)
#   ISSUER    the server's issuer, e.g. https://localhost:29443
# Environment:
#   TETHER_BIN  the tether binary (default: target/debug/tether of this checkout)
#
# Creates two apps with the admin CLI (names carry a random suffix, so the
# script can run repeatedly against the same data dir), installs the npm
# dependencies from package-lock.json when node_modules is missing, and runs
# the checks. Exit status: 0 when every check passed.
#
#   dcr-portal-*   client_credentials, client_secret_basic, scope
#                  client:register: gets the initial access tokens that
#                  authorize registrations (PORTAL_CLIENT_ID/SECRET; its
#                  name goes to PORTAL_CLIENT_NAME and is tried as a
#                  client_name)
#   dcr-noscope-*  client_credentials, client_secret_basic, scope openid only:
#                  its tokens must be refused by the registration endpoint
#                  (NOSCOPE_CLIENT_ID/SECRET)
# Every client dcr.mjs registers is deleted again through RFC 7592 when the
# checks get that far.
set -euo pipefail

if [[ $# -ne 2 ]]; then
  echo "usage: $0 DATA_DIR ISSUER" >&2
  exit 2
fi

DATA_DIR=$1
ISSUER=$2
TETHER_BIN=${TETHER_BIN:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/target/debug/tether}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CA="$DATA_DIR/tls/ca.pem"

for tool in node npm; do
  command -v "$tool" >/dev/null || { echo "dcr: $tool is not installed" >&2; exit 2; }
done
[[ -x $TETHER_BIN ]] || { echo "dcr: $TETHER_BIN is not an executable" >&2; exit 2; }
[[ -f $CA ]] || { echo "dcr: no CA certificate at $CA" >&2; exit 2; }

if [[ ! -d $HERE/node_modules ]]; then
  (cd "$HERE" && npm ci --no-audit --no-fund) >&2
fi

suffix=$(node -e 'process.stdout.write(require("node:crypto").randomBytes(6).toString("hex"))')

json_field() { # json_field FIELD  (reads one JSON object on stdin)
  node -e '
    let s = ""; process.stdin.on("data", (d) => (s += d)).on("end", () => {
      const v = JSON.parse(s)[process.argv[1]];
      if (typeof v !== "string" || !v) { console.error(`no ${process.argv[1]} in ${s}`); process.exit(1); }
      process.stdout.write(v);
    });' "$1"
}

PORTAL_CLIENT_NAME="dcr-portal-$suffix"
portal=$("$TETHER_BIN" app create --name "$PORTAL_CLIENT_NAME" \
  --grant-types client_credentials --scopes client:register \
  --json --data-dir "$DATA_DIR")
noscope=$("$TETHER_BIN" app create --name "dcr-noscope-$suffix" \
  --grant-types client_credentials --scopes openid \
  --json --data-dir "$DATA_DIR")

PORTAL_CLIENT_ID=$(json_field client_id <<<"$portal")
PORTAL_CLIENT_SECRET=$(json_field client_secret <<<"$portal")
NOSCOPE_CLIENT_ID=$(json_field client_id <<<"$noscope")
NOSCOPE_CLIENT_SECRET=$(json_field client_secret <<<"$noscope")
NODE_EXTRA_CA_CERTS=$CA
export ISSUER PORTAL_CLIENT_ID PORTAL_CLIENT_SECRET PORTAL_CLIENT_NAME NOSCOPE_CLIENT_ID \
  NOSCOPE_CLIENT_SECRET NODE_EXTRA_CA_CERTS

cd "$HERE"
exec node dcr.mjs
