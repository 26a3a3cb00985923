#!/usr/bin/env bash
# FAPI 2.0 Security Profile interoperability check against a running Tether
# server, with panva's openid-client and jose (see fapi2.mjs).
#
# Usage: interop/fapi2.sh DATA_DIR ISSUER
#   DATA_DIR  the running server's data directory (its SQLite database is
#             used by the admin CLI; its TLS CA at DATA_DIR/tls/ca.pem is
#             trusted by Node through NODE_EXTRA_CA_CERTS)
#   ISSUER    the server's issuer, e.g. https://localhost:29443
# The server should run with a mutual-TLS listener (`[tls] mtls_listen`, see
# the README); without one the mTLS checks fail and say so.
# Environment:
#   TETHER_BIN  the tether binary (default: target/debug/tether of this checkout)
#   FAPI2_DEV_NO_NEW_FLAGS=1  for development against a binary that lacks
#             `app create --profile`, `--backchannel-logout-uri` and
#             `--backchannel-logout-session-required`: those flags are dropped
#             (stand-ins `--require-par --id-token-alg ES256` are passed
#             instead) and the checks that depend on them are marked
#             "needs --profile fapi2" / "needs --backchannel-logout-uri" when
#             they fail. They still count as failures.
#
# Creates a fresh user and two FAPI 2.0 apps (names carry a random suffix, so
# the script can run repeatedly against the same data dir), starts nothing but
# the node script (which listens on 127.0.0.1:BACKCHANNEL_PORT for back-channel
# logout tokens) and runs the checks. Exit status: 0 when every check passed.
#
#   fapi-dpop-*  --profile fapi2, private_key_jwt with a fresh ES256 key pair
#                made with jose (public JWK Set file
#                DATA_DIR/fapi-dpop-SUFFIX.jwks.json, private JWK with the same
#                kid to fapi2.mjs in DPOP_PRIVATE_JWK), --binding dpop, JWT
#                access tokens, back-channel logout to
#                http://127.0.0.1:BACKCHANNEL_PORT/backchannel with sid required
#   fapi-mtls-*  --profile fapi2, self_signed_tls_client_auth with a fresh
#                self-signed P-256 certificate made with openssl
#                (DATA_DIR/fapi-mtls-SUFFIX.cert.pem / .key.pem, paths to
#                fapi2.mjs in MTLS_CERT_FILE / MTLS_KEY_FILE), --binding
#                certificate, JWT access tokens
# Both: grant types authorization_code,refresh_token, redirect URI
# https://client.example/cb (never contacted).
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
REDIRECT_URI=https://client.example/cb
FAPI2_DEV_NO_NEW_FLAGS=${FAPI2_DEV_NO_NEW_FLAGS:-}

for tool in node npm openssl; do
  command -v "$tool" >/dev/null || { echo "fapi2: $tool is not installed" >&2; exit 2; }
done
[[ -x $TETHER_BIN ]] || { echo "fapi2: $TETHER_BIN is not an executable" >&2; exit 2; }
[[ -f $CA ]] || { echo "fapi2: no CA certificate at $CA" >&2; exit 2; }

if [[ ! -d $HERE/node_modules ]]; then
  (cd "$HERE" && npm ci --no-audit --no-fund) >&2
fi

suffix=$(node -e 'process.stdout.write(require("node:crypto").randomBytes(6).toString("hex"))')
password=$(node -e 'process.stdout.write(require("node:crypto").randomBytes(18).toString("base64url"))')
username="fapi-$suffix"

json_field() { # json_field FIELD  (reads one JSON object on stdin)
  node -e '
    let s = ""; process.stdin.on("data", (d) => (s += d)).on("end", () => {
      const v = JSON.parse(s)[process.argv[1]];
      if (typeof v !== "string" || !v) { console.error(`no ${process.argv[1]} in ${s}`); process.exit(1); }
      process.stdout.write(v);
    });' "$1"
}

no_client_secret() { # no_client_secret APP_JSON
  if node -e 'process.exit("client_secret" in JSON.parse(process.argv[1]) ? 0 : 1)' "$1"; then
    echo "fapi2: app create printed a client_secret for a client without one: $1" >&2
    exit 1
  fi
}

# A free TCP port on 127.0.0.1 for the back-channel logout receiver (the node
# script listens on it; nothing else is started).
BACKCHANNEL_PORT=$(node -e '
  const s = require("node:net").createServer();
  s.listen(0, "127.0.0.1", () => { process.stdout.write(String(s.address().port)); s.close(); });')
BACKCHANNEL_URI="http://127.0.0.1:$BACKCHANNEL_PORT/backchannel"

# The flags this check is about; FAPI2_DEV_NO_NEW_FLAGS=1 swaps them for the
# closest stand-ins today's binary knows.
if [[ -n $FAPI2_DEV_NO_NEW_FLAGS ]]; then
  echo "fapi2: FAPI2_DEV_NO_NEW_FLAGS=1: creating the apps WITHOUT --profile fapi2," \
    "--backchannel-logout-uri, --backchannel-logout-session-required" \
    "(stand-ins: --require-par --id-token-alg ES256)" >&2
  profile_flags=(--require-par --id-token-alg ES256)
  backchannel_flags=()
else
  profile_flags=(--profile fapi2)
  backchannel_flags=(--backchannel-logout-uri "$BACKCHANNEL_URI" --backchannel-logout-session-required)
fi

printf '%s\n' "$password" |
  "$TETHER_BIN" user add "$username" --password-stdin \
    --email "$username@example.com" --name "FAPI $suffix" --data-dir "$DATA_DIR" >&2

# private_key_jwt: a fresh ES256 key pair. The public half goes to the server
# as a JWK Set file, the private JWK (same kid) to the checks on stdout.
DPOP_JWKS_FILE="$DATA_DIR/fapi-dpop-$suffix.jwks.json"
DPOP_PRIVATE_JWK=$(cd "$HERE" && node --input-type=module -e '
  import { writeFileSync } from "node:fs";
  import * as jose from "jose";
  const { publicKey, privateKey } = await jose.generateKeyPair("ES256", { extractable: true });
  const pub = await jose.exportJWK(publicKey);
  const kid = await jose.calculateJwkThumbprint(pub);
  writeFileSync(process.argv[1],
    JSON.stringify({ keys: [{ ...pub, kid, alg: "ES256", use: "sig" }] }) + "\n",
    { mode: 0o600 }); // tether warns about group/other-readable files in its data dir
  process.stdout.write(JSON.stringify({ ...(await jose.exportJWK(privateKey)), kid, alg: "ES256" }));
' "$DPOP_JWKS_FILE")
dpop=$("$TETHER_BIN" app create --name "fapi-dpop-$suffix" "${profile_flags[@]}" \
  --grant-types authorization_code,refresh_token --auth-method private_key_jwt \
  --jwks "$DPOP_JWKS_FILE" --binding dpop --token-type jwt \
  --redirect-uri "$REDIRECT_URI" "${backchannel_flags[@]}" \
  --json --data-dir "$DATA_DIR")

# self_signed_tls_client_auth: a fresh self-signed P-256 certificate.
MTLS_CERT_FILE="$DATA_DIR/fapi-mtls-$suffix.cert.pem"
MTLS_KEY_FILE="$DATA_DIR/fapi-mtls-$suffix.key.pem"
(
  umask 077
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -keyout "$MTLS_KEY_FILE" -out "$MTLS_CERT_FILE" -days 2 \
    -subj "/CN=fapi-mtls-$suffix" 2>/dev/null
)
mtls=$("$TETHER_BIN" app create --name "fapi-mtls-$suffix" "${profile_flags[@]}" \
  --grant-types authorization_code,refresh_token \
  --auth-method self_signed_tls_client_auth --cert-file "$MTLS_CERT_FILE" \
  --binding certificate --token-type jwt --redirect-uri "$REDIRECT_URI" \
  --json --data-dir "$DATA_DIR")

DPOP_CLIENT_ID=$(json_field client_id <<<"$dpop")
no_client_secret "$dpop"
MTLS_CLIENT_ID=$(json_field client_id <<<"$mtls")
no_client_secret "$mtls"
USERNAME=$username
PASSWORD=$password
NODE_EXTRA_CA_CERTS=$CA
export ISSUER REDIRECT_URI USERNAME PASSWORD DPOP_CLIENT_ID DPOP_PRIVATE_JWK \
  MTLS_CLIENT_ID MTLS_CERT_FILE MTLS_KEY_FILE BACKCHANNEL_PORT \
  FAPI2_DEV_NO_NEW_FLAGS NODE_EXTRA_CA_CERTS

cd "$HERE"
exec node fapi2.mjs
