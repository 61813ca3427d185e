#!/usr/bin/env bash
# Makes a CA and certificates for a cairn cluster with openssl: one per
# node (valid for the node's advertised IP or host name, for both server
# and client authentication, as members connect to each other) and, if
# asked, client certificates for nodes run with --tls-client-auth.
#
#   deploy/certs.sh DIR n1=10.0.0.1 n2=10.0.0.2 n3=10.0.0.3 [client:NAME ...]
#
# writes DIR/ca.pem and DIR/ca-key.pem (created once, reused), and
# DIR/<name>.pem and DIR/<name>-key.pem for each node or client. A node's
# address may be an IP or a DNS name; add more with commas
# (n1=10.0.0.1,n1.example.com). Keys are ECDSA P-256; the CA is valid for
# ten years, the others for two. For production, your own PKI (Vault,
# cert-manager, cfssl) does the same job with rotation.
set -euo pipefail
[ $# -ge 2 ] || { sed -n '2,14p' "$0"; exit 2; }
command -v openssl >/dev/null || { echo "certs.sh: needs openssl" >&2; exit 1; }
dir=$1; shift
mkdir -p "$dir"
umask 077
if [ ! -f "$dir/ca.pem" ]; then
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 \
    -subj "/CN=cairn CA" -keyout "$dir/ca-key.pem" -out "$dir/ca.pem" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
fi
for arg in "$@"; do
  case "$arg" in
    client:*) name=${arg#client:}; san="" ;;
    *=*) name=${arg%%=*}; san="" ; IFS=, read -ra hosts <<< "${arg#*=}"
         for h in "${hosts[@]}"; do
           if [[ "$h" =~ ^[0-9.]+$ || "$h" == *:* ]]; then san+="IP:$h,"; else san+="DNS:$h,"; fi
         done
         san="subjectAltName=${san%,}" ;;
    *) echo "certs.sh: $arg is neither NAME=ADDR nor client:NAME" >&2; exit 2 ;;
  esac
  ext=$(mktemp)
  printf 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth,clientAuth\n%s\n' "$san" > "$ext"
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$name" \
    -keyout "$dir/$name-key.pem" -out "$dir/$name.csr" 2>/dev/null
  openssl x509 -req -in "$dir/$name.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca-key.pem" -CAcreateserial \
    -days 730 -extfile "$ext" -out "$dir/$name.pem" 2>/dev/null
  rm -f "$ext" "$dir/$name.csr"
  echo "$dir/$name.pem ${san:-(client)}"
done
