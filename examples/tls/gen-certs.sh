#!/usr/bin/env bash
# Creates a throwaway CA, a server certificate (api.example.com, payments.mesh.local,
# localhost) and a client certificate in this directory, for edge-tls.yaml and
# mesh-mtls.yaml. DEMO ONLY: the keys are unencrypted and the CA is not trusted by anything.
set -euo pipefail
cd "$(dirname "$0")"
days=30
openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days $days \
    -subj "/CN=sluice example CA" -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
leaf() {
    local name=$1 sans=$2 usage=$3
    openssl req -newkey rsa:2048 -nodes -keyout "$name.key" -out "$name.csr" -subj "/CN=$name" 2>/dev/null
    printf 'subjectAltName=%s\nextendedKeyUsage=%s\n' "$sans" "$usage" >"$name.ext"
    openssl x509 -req -in "$name.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -out "$name.pem" \
        -days $days -extfile "$name.ext" 2>/dev/null
    rm -f "$name.csr" "$name.ext"
}
leaf server "DNS:api.example.com,DNS:*.example.com,DNS:payments.mesh.local,DNS:localhost,IP:127.0.0.1" serverAuth
leaf client "DNS:sluice.mesh.local" clientAuth
rm -f ca.srl
echo "wrote ca.pem server.pem server.key client.pem client.key in $(pwd)"
