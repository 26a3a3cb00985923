# Shared preamble and helpers of the interop drivers (run.sh, fapi2.sh,
# dcr.sh). Source it after `set -euo pipefail`, then call interop_init with the
# driver's own arguments.
# shellcheck shell=bash

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

# interop_init TAG TOOLS DATA_DIR ISSUER
#   TAG    starts the error messages (the driver's name)
#   TOOLS  the commands the driver needs, space-separated (e.g. "node npm")
# Checks the arguments, sets DATA_DIR, ISSUER, TETHER_BIN (default:
# target/debug/tether of this checkout), CA (DATA_DIR/tls/ca.pem) and a random
# `suffix` for names, checks that the tools, the binary and the CA are there,
# and installs the npm dependencies from package-lock.json when node_modules is
# missing. Exits with status 2 when something is missing.
interop_init() {
  INTEROP_TAG=$1
  local tools=$2 tool
  shift 2
  if [[ $# -ne 2 ]]; then
    echo "usage: $0 DATA_DIR ISSUER" >&2
    exit 2
  fi
  DATA_DIR=$1
  ISSUER=$2
  TETHER_BIN=${TETHER_BIN:-$(cd "$HERE/.." && pwd)/target/debug/tether}
  CA="$DATA_DIR/tls/ca.pem"

  for tool in $tools; do
    command -v "$tool" >/dev/null || { echo "$INTEROP_TAG: $tool is not installed" >&2; exit 2; }
  done
  [[ -x $TETHER_BIN ]] || { echo "$INTEROP_TAG: $TETHER_BIN is not an executable" >&2; exit 2; }
  [[ -f $CA ]] || { echo "$INTEROP_TAG: no CA certificate at $CA" >&2; exit 2; }

  if [[ ! -d $HERE/node_modules ]]; then
    (cd "$HERE" && npm ci --no-audit --no-fund) >&2
  fi

  suffix=$(random_string 6 hex)
}

random_string() { # random_string BYTES ENCODING  (e.g. 6 hex, 18 base64url)
  node -e 'process.stdout.write(require("node:crypto").randomBytes(Number(process.argv[1])).toString(process.argv[2]))' \
    "$1" "$2"
}

json_field() { # json_field FIELD  (reads one JSON object on stdin)
  node -e '
    let s = ""; process.stdin.on("data", (d) => (s += d)).on("end", () => {
      const v = JSON.parse(s)[process.argv[1]];
      if (typeof v !== "string" || !v) { console.error(`no ${process.argv[1]} in ${s}`); process.exit(1); }
      process.stdout.write(v);
    });' "$1"
}

no_client_secret() { # no_client_secret APP_JSON  (app create --json output)
  if node -e 'process.exit("client_secret" in JSON.parse(process.argv[1]) ? 0 : 1)' "$1"; then
    echo "$INTEROP_TAG: app create printed a client_secret for a client without one: $1" >&2
    exit 1
  fi
}

add_user() { # add_user USERNAME DISPLAY_NAME PASSWORD  (email USERNAME@example.com)
  printf '%s\n' "$3" |
    "$TETHER_BIN" user add "$1" --password-stdin \
      --email "$1@example.com" --name "$2" --data-dir "$DATA_DIR" >&2
}

# private_key_jwt: a fresh ES256 key pair made with jose. The public half goes
# to the server as a JWK Set file, the private JWK (same kid) to stdout.
es256_key_pair() { # es256_key_pair JWKS_FILE  (prints the private JWK)
  (cd "$HERE" && node --input-type=module -e '
  import { writeFileSync } from "node:fs";
  import * as jose from "jose";
  const { publicKey, privateKey } = await jose.generateKeyPair("ES256", { extractable: true });
  const pub = await jose.exportJWK(publicKey);
  const kid = await jose.calculateJwkThumbprint(pub);
  writeFileSync(process.argv[1],
    JSON.stringify({ keys: [{ ...pub, kid, alg: "ES256", use: "sig" }] }) + "\n",
    { mode: 0o600 }); // tether warns about group/other-readable files in its data dir
  process.stdout.write(JSON.stringify({ ...(await jose.exportJWK(privateKey)), kid, alg: "ES256" }));
' "$1")
}
