#!/usr/bin/env bash
# Interoperability check against a running Tether server, with panva's
# openid-client and jose (see oidc-client.mjs).
#
# Usage: interop/run.sh DATA_DIR ISSUER
#   DATA_DIR  the running server's data directory (its SQLite database is
#             used by the admin CLI; its TLS CA at DATA_DIR/tls/ca.pem is
#             trusted by Node through NODE_EXTRA_CA_CERTS)
#   ISSUER    the server's issuer, e.g. https://localhost:29443
# Environment:
#   TETHER_BIN  the tether binary (default: target/debug/tether of this checkout)
#
# Creates a fresh user and two apps (names carry a random suffix, so the
# script can run repeatedly against the same data dir), installs the npm
# dependencies from package-lock.json when node_modules is missing, and runs
# the checks. Exit status: 0 when every check passed.
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
REDIRECT_URI=https://app.example/cb
EXPECTED_AUDIENCE=https://api.interop.example

for tool in node npm; do
  command -v "$tool" >/dev/null || { echo "interop: $tool is not installed" >&2; exit 2; }
done
[[ -x $TETHER_BIN ]] || { echo "interop: $TETHER_BIN is not an executable" >&2; exit 2; }
[[ -f $CA ]] || { echo "interop: no CA certificate at $CA" >&2; exit 2; }

if [[ ! -d $HERE/node_modules ]]; then
  (cd "$HERE" && npm ci --no-audit --no-fund) >&2
fi

suffix=$(node -e 'process.stdout.write(require("node:crypto").randomBytes(6).toString("hex"))')
password=$(node -e 'process.stdout.write(require("node:crypto").randomBytes(18).toString("base64url"))')
username="interop-$suffix"

json_field() { # json_field FIELD  (reads one JSON object on stdin)
  node -e '
    let s = ""; process.stdin.on("data", (d) => (s += d)).on("end", () => {
      const v = JSON.parse(s)[process.argv[1]];
      if (typeof v !== "string" || !v) { console.error(`no ${process.argv[1]} in ${s}`); process.exit(1); }
      process.stdout.write(v);
    });' "$1"
}

printf '%s\n' "$password" |
  "$TETHER_BIN" user add "$username" --password-stdin \
    --email "$username@example.com" --name "Interop $suffix" --data-dir "$DATA_DIR" >&2

conf=$("$TETHER_BIN" app create --name "interop-confidential-$suffix" \
  --grant-types authorization_code,refresh_token,password,client_credentials \
  --redirect-uri "$REDIRECT_URI" --token-type jwt --introspect-any \
  --audience "$EXPECTED_AUDIENCE" --json --data-dir "$DATA_DIR")
pub=$("$TETHER_BIN" app create --name "interop-public-$suffix" --public \
  --grant-types authorization_code,refresh_token \
  --redirect-uri "$REDIRECT_URI" --token-type jwt --json \
  --data-dir "$DATA_DIR")

CONF_CLIENT_ID=$(json_field client_id <<<"$conf")
CONF_CLIENT_SECRET=$(json_field client_secret <<<"$conf")
PUBLIC_CLIENT_ID=$(json_field client_id <<<"$pub")
USERNAME=$username
PASSWORD=$password
NODE_EXTRA_CA_CERTS=$CA
export ISSUER REDIRECT_URI EXPECTED_AUDIENCE CONF_CLIENT_ID CONF_CLIENT_SECRET PUBLIC_CLIENT_ID \
  USERNAME PASSWORD NODE_EXTRA_CA_CERTS

cd "$HERE"
exec node oidc-client.mjs
