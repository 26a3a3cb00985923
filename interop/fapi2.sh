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
# shellcheck source=interop/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
interop_init fapi2 "node npm openssl" "$@"

REDIRECT_URI=https://client.example/cb
password=$(random_string 18 base64url)
username="fapi-$suffix"

# A free TCP port on 127.0.0.1 for the back-channel logout receiver (the node
# script listens on it; nothing else is started).
BACKCHANNEL_PORT=$(node -e '
  const s = require("node:net").createServer();
  s.listen(0, "127.0.0.1", () => { process.stdout.write(String(s.address().port)); s.close(); });')
BACKCHANNEL_URI="http://127.0.0.1:$BACKCHANNEL_PORT/backchannel"

add_user "$username" "FAPI $suffix" "$password"

# private_key_jwt: a fresh ES256 key pair. The public half goes to the server
# as a JWK Set file, the private JWK (same kid) to the checks.
DPOP_JWKS_FILE="$DATA_DIR/fapi-dpop-$suffix.jwks.json"
DPOP_PRIVATE_JWK=$(es256_key_pair "$DPOP_JWKS_FILE")
dpop=$("$TETHER_BIN" app create --name "fapi-dpop-$suffix" --profile fapi2 \
  --grant-types authorization_code,refresh_token --auth-method private_key_jwt \
  --jwks "$DPOP_JWKS_FILE" --binding dpop --token-type jwt \
  --redirect-uri "$REDIRECT_URI" --backchannel-logout-uri "$BACKCHANNEL_URI" \
  --backchannel-logout-session-required \
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
mtls=$("$TETHER_BIN" app create --name "fapi-mtls-$suffix" --profile fapi2 \
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
  MTLS_CLIENT_ID MTLS_CERT_FILE MTLS_KEY_FILE BACKCHANNEL_PORT NODE_EXTRA_CA_CERTS

cd "$HERE"
exec node fapi2.mjs
