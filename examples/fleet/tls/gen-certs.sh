#!/usr/bin/env bash
# Creates a throwaway CA and the certificates of the fleet example in this directory:
#   etcd.pem / etcd.key      every etcd member: server and peer certificate (localhost,
#                            127.0.0.1, and the pod DNS names of kubernetes/etcd.yaml)
#   client.pem / client.key  the client certificate sluice-proxy, sluice-control and etcdctl
#                            present to etcd (etcd runs with --client-cert-auth); it has no
#                            Common Name: with authentication on, etcd's JSON gateway (what
#                            sluice talks to) refuses a client certificate that has one
# DEMO ONLY: the keys are unencrypted, one certificate serves all three members, and the CA is
# trusted by nothing else. In production, give each member its own certificate (cert-manager,
# your PKI).
set -euo pipefail
cd "$(dirname "$0")"
days=30
openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days $days \
    -subj "/CN=sluice fleet example CA" -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
leaf() {
    local name=$1 subject=$2 sans=$3 usage=$4
    openssl req -newkey rsa:2048 -nodes -keyout "$name.key" -out "$name.csr" -subj "$subject" 2>/dev/null
    printf 'subjectAltName=%s\nextendedKeyUsage=%s\n' "$sans" "$usage" >"$name.ext"
    openssl x509 -req -in "$name.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -out "$name.pem" \
        -days $days -extfile "$name.ext" 2>/dev/null
    rm -f "$name.csr" "$name.ext"
}
# clientAuth too: members present it to each other, and etcd's JSON gateway (what sluice talks
# to) presents it to the member's own gRPC server when --client-cert-auth is on.
leaf etcd /CN=etcd "DNS:localhost,IP:127.0.0.1,DNS:*.sluice-etcd.shop.svc.cluster.local,DNS:*.sluice-etcd.shop.svc,DNS:sluice-etcd-client.shop.svc.cluster.local" \
    serverAuth,clientAuth
# No CN (see above): the etcd user is the one in SLUICE_ETCD_USERNAME.
leaf client "/O=sluice" "DNS:sluice" clientAuth
rm -f ca.srl
chmod 600 ./*.key
echo "wrote ca.pem etcd.pem etcd.key client.pem client.key in $(pwd)"
