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
# Creates a fresh user and seven apps (names carry a random suffix, so the
# script can run repeatedly against the same data dir), installs the npm
# dependencies from package-lock.json when node_modules is missing, and runs
# the checks. Exit status: 0 when every check passed.
#
# The apps: a confidential client (client_secret_basic), a public client, and
# two client_credentials clients that authenticate with JWTs:
#   interop-pkjwt-*  private_key_jwt; the script generates a fresh ES256 key
#                    pair with jose, registers the public key from a JWK Set
#                    file (DATA_DIR/interop-pkjwt-SUFFIX.jwks.json, passed to
#                    `app create --jwks`) and hands the private JWK (same kid)
#                    to oidc-client.mjs in PKJWT_PRIVATE_JWK
#   interop-csjwt-*  client_secret_jwt; its client_secret (shown once in the
#                    `app create --json` output) goes to CSJWT_CLIENT_SECRET
# and two authorization_code + refresh_token clients for pushed authorization
# requests (RFC 9126):
#   interop-par-*         client_secret_basic, created with --require-par; its
#                         id and secret go to PAR_CLIENT_ID, PAR_CLIENT_SECRET
#   interop-pkjwt-code-*  private_key_jwt with its own ES256 key pair, made as
#                         for interop-pkjwt-* (JWK Set file
#                         DATA_DIR/interop-pkjwt-code-SUFFIX.jwks.json); its
#                         id and private JWK go to PKJWT_CODE_CLIENT_ID,
#                         PKJWT_CODE_PRIVATE_JWK
# and one for JWT-secured authorization requests (RFC 9101):
#   interop-jar-*  client_secret_basic, authorization_code + refresh_token,
#                  with a JWK Set of its own ES256 key pair (made as for
#                  interop-pkjwt-*, file DATA_DIR/interop-jar-SUFFIX.jwks.json)
#                  registered only to verify its request objects; its id,
#                  secret and private JWK go to JAR_CLIENT_ID,
#                  JAR_CLIENT_SECRET, JAR_PRIVATE_JWK. Request objects pushed
#                  inside PAR are signed with interop-pkjwt-code-*'s key.
set -euo pipefail
# shellcheck source=interop/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
interop_init interop "node npm" "$@"

REDIRECT_URI=https://app.example/cb
EXPECTED_AUDIENCE=https://api.interop.example
password=$(random_string 18 base64url)
username="interop-$suffix"

add_user "$username" "Interop $suffix" "$password"

conf=$("$TETHER_BIN" app create --name "interop-confidential-$suffix" \
  --grant-types authorization_code,refresh_token,password,client_credentials \
  --redirect-uri "$REDIRECT_URI" --token-type jwt --introspect-any \
  --audience "$EXPECTED_AUDIENCE" --json --data-dir "$DATA_DIR")
pub=$("$TETHER_BIN" app create --name "interop-public-$suffix" --public \
  --grant-types authorization_code,refresh_token \
  --redirect-uri "$REDIRECT_URI" --token-type jwt --json \
  --data-dir "$DATA_DIR")

# private_key_jwt: a fresh ES256 key pair. The public half goes to the server
# as a JWK Set file, the private JWK (same kid) to the checks.
PKJWT_JWKS_FILE="$DATA_DIR/interop-pkjwt-$suffix.jwks.json"
PKJWT_PRIVATE_JWK=$(es256_key_pair "$PKJWT_JWKS_FILE")
pkjwt=$("$TETHER_BIN" app create --name "interop-pkjwt-$suffix" \
  --grant-types client_credentials --auth-method private_key_jwt \
  --jwks "$PKJWT_JWKS_FILE" --token-type jwt --introspect-any \
  --json --data-dir "$DATA_DIR")
csjwt=$("$TETHER_BIN" app create --name "interop-csjwt-$suffix" \
  --grant-types client_credentials --auth-method client_secret_jwt \
  --token-type jwt --introspect-any --json --data-dir "$DATA_DIR")

# Pushed authorization requests (RFC 9126): an app that must push its
# requests, and a private_key_jwt app (its own key pair) that pushes anyway.
par=$("$TETHER_BIN" app create --name "interop-par-$suffix" --require-par \
  --grant-types authorization_code,refresh_token \
  --redirect-uri "$REDIRECT_URI" --token-type jwt --json \
  --data-dir "$DATA_DIR")
PKJWT_CODE_JWKS_FILE="$DATA_DIR/interop-pkjwt-code-$suffix.jwks.json"
PKJWT_CODE_PRIVATE_JWK=$(es256_key_pair "$PKJWT_CODE_JWKS_FILE")
pkjwt_code=$("$TETHER_BIN" app create --name "interop-pkjwt-code-$suffix" \
  --grant-types authorization_code,refresh_token --auth-method private_key_jwt \
  --jwks "$PKJWT_CODE_JWKS_FILE" --redirect-uri "$REDIRECT_URI" \
  --token-type jwt --json --data-dir "$DATA_DIR")

# JWT-secured authorization requests (RFC 9101): a client_secret_basic app
# whose registered JWK Set only verifies its request objects.
JAR_JWKS_FILE="$DATA_DIR/interop-jar-$suffix.jwks.json"
JAR_PRIVATE_JWK=$(es256_key_pair "$JAR_JWKS_FILE")
jar=$("$TETHER_BIN" app create --name "interop-jar-$suffix" \
  --grant-types authorization_code,refresh_token \
  --jwks "$JAR_JWKS_FILE" --redirect-uri "$REDIRECT_URI" \
  --token-type jwt --json --data-dir "$DATA_DIR")

CONF_CLIENT_ID=$(json_field client_id <<<"$conf")
CONF_CLIENT_SECRET=$(json_field client_secret <<<"$conf")
PUBLIC_CLIENT_ID=$(json_field client_id <<<"$pub")
PKJWT_CLIENT_ID=$(json_field client_id <<<"$pkjwt")
no_client_secret "$pkjwt"
CSJWT_CLIENT_ID=$(json_field client_id <<<"$csjwt")
CSJWT_CLIENT_SECRET=$(json_field client_secret <<<"$csjwt")
PAR_CLIENT_ID=$(json_field client_id <<<"$par")
PAR_CLIENT_SECRET=$(json_field client_secret <<<"$par")
PKJWT_CODE_CLIENT_ID=$(json_field client_id <<<"$pkjwt_code")
no_client_secret "$pkjwt_code"
JAR_CLIENT_ID=$(json_field client_id <<<"$jar")
JAR_CLIENT_SECRET=$(json_field client_secret <<<"$jar")
USERNAME=$username
PASSWORD=$password
NODE_EXTRA_CA_CERTS=$CA
export ISSUER REDIRECT_URI EXPECTED_AUDIENCE CONF_CLIENT_ID CONF_CLIENT_SECRET PUBLIC_CLIENT_ID \
  PKJWT_CLIENT_ID PKJWT_PRIVATE_JWK CSJWT_CLIENT_ID CSJWT_CLIENT_SECRET \
  PAR_CLIENT_ID PAR_CLIENT_SECRET PKJWT_CODE_CLIENT_ID PKJWT_CODE_PRIVATE_JWK \
  JAR_CLIENT_ID JAR_CLIENT_SECRET JAR_PRIVATE_JWK \
  USERNAME PASSWORD NODE_EXTRA_CA_CERTS

cd "$HERE"
exec node oidc-client.mjs
