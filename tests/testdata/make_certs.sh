#!/bin/sh
# Regenerates the TLS fixtures used by tests/transports/tls_test.ts, the TLS
# example and the TLS bench:
#
#   ca.pem          a test CA (ECDSA P-256)
#   server.pem      a server certificate for localhost and 127.0.0.1 (SAN),
#                   signed by that CA
#   server_key.pem  its private key (PKCS#8)
#   other_ca.pem    an unrelated CA, for the wrong-CA tests
#
# The CA keys are thrown away: run this again to make new fixtures.
# Usage: sh tests/testdata/make_certs.sh   (needs openssl)
set -eu

out=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
days=3650

make_ca() { # name subject
  openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -keyout "$work/$1_key.pem" -out "$work/$1.pem" -days "$days" -sha256 \
    -subj "$2" \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
}

make_ca ca "/CN=aio-protocols test CA"
make_ca other_ca "/CN=aio-protocols unrelated CA"

openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 \
  -out "$work/server_key.pem"
openssl req -new -key "$work/server_key.pem" -out "$work/server.csr" \
  -subj "/CN=localhost"
cat > "$work/server.ext" <<EXT
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth
subjectAltName=DNS:localhost,IP:127.0.0.1
EXT
openssl x509 -req -in "$work/server.csr" -CA "$work/ca.pem" \
  -CAkey "$work/ca_key.pem" -CAcreateserial -out "$work/server.pem" \
  -days "$days" -sha256 -extfile "$work/server.ext" 2>/dev/null

for name in ca other_ca server server_key; do
  cp "$work/$name.pem" "$out/$name.pem"
  chmod 644 "$out/$name.pem"
done
echo "wrote ca.pem other_ca.pem server.pem server_key.pem to $out"
