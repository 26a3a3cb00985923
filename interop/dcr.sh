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
# shellcheck source=interop/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
interop_init dcr "node npm" "$@"

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
