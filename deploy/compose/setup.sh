#!/bin/sh
# Creates what deploy/compose/compose.yaml mounts but must never be in the repository: the
# shared master key, the PostgreSQL password, and a demo CA with certificates for nginx, the
# gateway and one client. Existing files are kept, so running it again changes nothing.
#
#   docker compose run --rm setup      # in a container, as root: the three files the tether
#                                      # containers read go to their user (65532), the rest to you
#   sh setup.sh [DIR]                  # or on the host (needs openssl); DIR defaults to this
#                                      # script's directory. As root it sets the same owners.
#
# Produces, under DIR:
#   secrets/master.key     64 hex characters: the master key of every node (TETHER_MASTER_KEY form)
#   secrets/db_password    PostgreSQL password of the role "tether"
#   secrets/pgpass         the same for the nodes, as a pgpass line (PGPASSFILE)
#   certs/ca.pem           demo CA (public): give it to curl (--cacert) and clients
#   certs/ca-key.pem       its key (keep it, or delete it once the certificates below exist)
#   certs/edge.pem, certs/edge-key.pem        nginx: localhost, 127.0.0.1
#   certs/gateway.pem, certs/gateway-key.pem  the gateway: localhost, 127.0.0.1
#   certs/client.pem, certs/client-key.pem    a client certificate (CN=demo-client) for mTLS
set -eu

DIR=${1:-$(cd "$(dirname "$0")" && pwd)}
RUNTIME_UID=65532   # the image's user (distroless "nonroot")
DAYS=825

command -v openssl >/dev/null 2>&1 || { echo "setup.sh: openssl is needed" >&2; exit 1; }
umask 077
mkdir -p "$DIR/secrets" "$DIR/certs"
cd "$DIR"

made() { printf 'setup.sh: wrote %s\n' "$*" >&2; }

if [ ! -s secrets/master.key ]; then
    openssl rand -hex 32 > secrets/master.key
    made secrets/master.key
fi
if [ ! -s secrets/db_password ]; then
    openssl rand -hex 24 > secrets/db_password
    made secrets/db_password
fi
if [ ! -s secrets/pgpass ]; then
    # host:port:database:user:password (PostgreSQL's pgpass format)
    printf '*:*:tether:tether:%s\n' "$(cat secrets/db_password)" > secrets/pgpass
    made secrets/pgpass
fi

# ---- demo PKI (EC P-256, v3 certificates) ----
if [ ! -s certs/ca.pem ]; then
    openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -sha256 \
        -days "$DAYS" -subj "/O=Tether demo/CN=Tether compose demo CA" \
        -addext "basicConstraints=critical,CA:TRUE,pathlen:0" \
        -addext "keyUsage=critical,keyCertSign,cRLSign" \
        -keyout certs/ca-key.pem -out certs/ca.pem 2>/dev/null
    made certs/ca.pem certs/ca-key.pem
fi

# issue NAME SUBJECT EXTENSIONS...: a key and a certificate signed by the demo CA.
issue() {
    name=$1 subject=$2
    shift 2
    [ -s "certs/$name.pem" ] && return 0
    ext=$(mktemp)
    for e in "$@"; do printf '%s\n' "$e" >> "$ext"; done
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -sha256 \
        -subj "$subject" -keyout "certs/$name-key.pem" -out "certs/$name.csr" 2>/dev/null
    openssl x509 -req -in "certs/$name.csr" -CA certs/ca.pem -CAkey certs/ca-key.pem \
        -CAcreateserial -days "$DAYS" -sha256 -extfile "$ext" -out "certs/$name.pem" 2>/dev/null
    rm -f "certs/$name.csr" "$ext"
    made "certs/$name.pem" "certs/$name-key.pem"
}

server_ext="subjectAltName=DNS:localhost,IP:127.0.0.1"
issue edge "/O=Tether demo/CN=localhost" "$server_ext" \
    "keyUsage=critical,digitalSignature" "extendedKeyUsage=serverAuth" "basicConstraints=CA:FALSE"
issue gateway "/O=Tether demo/CN=localhost" "$server_ext" \
    "keyUsage=critical,digitalSignature" "extendedKeyUsage=serverAuth" "basicConstraints=CA:FALSE"
issue client "/O=Tether demo/CN=demo-client" \
    "keyUsage=critical,digitalSignature" "extendedKeyUsage=clientAuth" "basicConstraints=CA:FALSE"
rm -f certs/ca.srl

# Public material readable by everyone; secrets and keys by their owner only.
chmod 0755 certs
chmod 0644 certs/ca.pem certs/edge.pem certs/gateway.pem certs/client.pem
chmod 0700 secrets
chmod 0400 secrets/master.key secrets/pgpass secrets/db_password
chmod 0600 certs/ca-key.pem certs/edge-key.pem certs/gateway-key.pem certs/client-key.pem

# Compose mounts secrets from files as they are (same owner and mode), so the files the tether
# containers read must belong to their user. nginx and PostgreSQL read theirs as root. As root
# (e.g. in the setup container), everything else goes to the owner of DIR: the operator.
if [ "$(id -u)" = 0 ]; then
    chown -R "$(stat -c %u:%g .)" secrets certs
    chown "$RUNTIME_UID:$RUNTIME_UID" secrets/master.key secrets/pgpass certs/gateway-key.pem
else
    cat >&2 <<EOF
setup.sh: not root, so secrets/master.key, secrets/pgpass and certs/gateway-key.pem still belong
to you and the tether containers (uid $RUNTIME_UID) cannot read them. Either run
  docker compose run --rm setup
or
  sudo chown $RUNTIME_UID:$RUNTIME_UID $DIR/secrets/master.key $DIR/secrets/pgpass $DIR/certs/gateway-key.pem
(Docker Desktop maps file owners itself and needs neither.)
EOF
fi
