#!/usr/bin/env bash
# Writes the cluster's PKI (EC P-256, openssl) and kubeconfigs into $PKI; sourced by up.sh.
# Three CAs like kubeadm: the cluster CA, etcd's CA, and the front-proxy CA (API aggregation).
# Needs: PKI NODE_NAME NODE_IP SERVICE_IP API_PORT.

# cert NAME CA SUBJECT [SANS] [USAGE]: NAME.key + NAME.crt signed by CA (or self-signed when CA=self).
cert() {
  local name=$1 ca=$2 subj=$3 sans=${4:-} usage=${5:-clientAuth} ext
  openssl ecparam -name prime256v1 -genkey -noout -out "$PKI/$name.key" 2>/dev/null
  ext="$PKI/$name.ext"
  if [[ $ca == self ]]; then
    printf 'basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign,digitalSignature\nsubjectKeyIdentifier=hash\n' >"$ext"
    openssl req -x509 -new -key "$PKI/$name.key" -subj "$subj" -days 3650 -sha256 \
      -extensions v3 -config <(printf '[req]\ndistinguished_name=dn\n[dn]\n[v3]\n'; cat "$ext") \
      -out "$PKI/$name.crt" 2>/dev/null
  else
    { echo 'basicConstraints=critical,CA:FALSE'; echo 'keyUsage=critical,digitalSignature,keyEncipherment'
      echo "extendedKeyUsage=$usage"; [[ -n $sans ]] && echo "subjectAltName=$sans"; } >"$ext"
    openssl req -new -key "$PKI/$name.key" -subj "$subj" 2>/dev/null |
      openssl x509 -req -CA "$PKI/$ca.crt" -CAkey "$PKI/$ca.key" -CAcreateserial -days 825 -sha256 \
        -extfile "$ext" -out "$PKI/$name.crt" 2>/dev/null
  fi
  rm -f "$ext"
}

# kubeconfig FILE USER CERT [SERVER]: a kubeconfig that authenticates with a client certificate.
kubeconfig() {
  local file=$1 user=$2 crt=$3 server=${4:-https://127.0.0.1:$API_PORT}
  cat >"$file" <<KC
apiVersion: v1
kind: Config
clusters:
- name: modelops
  cluster:
    server: $server
    certificate-authority-data: $(base64 -w0 "$PKI/ca.crt")
users:
- name: $user
  user:
    client-certificate-data: $(base64 -w0 "$PKI/$crt.crt")
    client-key-data: $(base64 -w0 "$PKI/$crt.key")
contexts:
- name: modelops
  context: {cluster: modelops, user: $user}
current-context: modelops
KC
  chmod 600 "$file"
}

write_pki() {
  mkdir -p "$PKI" && chmod 700 "$PKI"
  local api_sans="DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,DNS:localhost,DNS:$NODE_NAME,IP:127.0.0.1,IP:$NODE_IP,IP:$SERVICE_IP"
  cert ca self "/CN=modelops-cluster-ca"
  cert etcd-ca self "/CN=modelops-etcd-ca"
  cert front-proxy-ca self "/CN=modelops-front-proxy-ca"
  cert etcd-server etcd-ca "/CN=etcd" "DNS:localhost,IP:127.0.0.1" serverAuth,clientAuth
  cert apiserver-etcd-client etcd-ca "/CN=kube-apiserver-etcd-client"
  cert apiserver ca "/CN=kube-apiserver" "$api_sans" serverAuth
  cert apiserver-kubelet-client ca "/O=system:masters/CN=kube-apiserver-kubelet-client"
  cert front-proxy-client front-proxy-ca "/CN=front-proxy-client"
  cert admin ca "/O=system:masters/CN=kubernetes-admin"
  cert controller-manager ca "/CN=system:kube-controller-manager"
  cert scheduler ca "/CN=system:kube-scheduler"
  cert kube-proxy ca "/CN=system:kube-proxy"
  cert kubelet-client ca "/O=system:nodes/CN=system:node:$NODE_NAME"
  cert kubelet-server ca "/CN=$NODE_NAME" "DNS:$NODE_NAME,DNS:localhost,IP:$NODE_IP,IP:127.0.0.1" serverAuth
  openssl ecparam -name prime256v1 -genkey -noout -out "$PKI/sa.key" 2>/dev/null
  openssl ec -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub" 2>/dev/null
  kubeconfig "$PKI/admin.kubeconfig" kubernetes-admin admin
  kubeconfig "$PKI/controller-manager.kubeconfig" system:kube-controller-manager controller-manager
  kubeconfig "$PKI/scheduler.kubeconfig" system:kube-scheduler scheduler
  kubeconfig "$PKI/kube-proxy.kubeconfig" system:kube-proxy kube-proxy
  kubeconfig "$PKI/kubelet.kubeconfig" "system:node:$NODE_NAME" kubelet-client
}
