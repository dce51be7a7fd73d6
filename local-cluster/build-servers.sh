#!/usr/bin/env bash
# Builds the servers of the local control plane (and helm, which the chart tests
# run against it) from their pinned Go modules
# (go/*/go.mod) into a cache outside the clone, keyed by version:
#   $GOLFTRACKER_CACHE/bin/<name>-<version>   (default ~/.cache/golftracker)
# Vault is a folder instead: vault-<version>-minimal/{vault,plugins/...} (see below).
# A binary already in the cache is reused. PostgreSQL comes from apt instead
# (see ../xtask, `ensure_system_packages`). Cold build on 2 cores: minutes each.
#   build-servers.sh            build everything missing
#   build-servers.sh --print    print "name path" for each binary, build nothing
#   build-servers.sh NAME...    build only these (etcd kube-apiserver kubectl minio vault helm)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cache=${GOLFTRACKER_CACHE:-$HOME/.cache/golftracker}
bin="$cache/bin"
mkdir -p "$bin"

# name  go-module-dir  package  version  [extra -ldflags: what the upstream Makefile stamps]
servers=(
  "etcd           kube   go.etcd.io/etcd/server/v3                v3.6.8"
  "kube-apiserver kube   k8s.io/kubernetes/cmd/kube-apiserver     v1.36.3"
  "kubectl        kube   k8s.io/kubernetes/cmd/kubectl            v1.36.3"
  "minio          minio  github.com/minio/minio                   RELEASE.2026-02-12"
  "vault          vault  github.com/hashicorp/vault               v1.21.0-minimal"
  "helm           helm   helm.sh/helm/v3/cmd/helm                 v3.22.0  -X helm.sh/helm/v3/internal/version.version=v3.22.0 -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=37 -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=37"
)

print_only=false
wanted=()
for a in "$@"; do
  case "$a" in
    --print) print_only=true ;;
    *) wanted+=("$a") ;;
  esac
done

# go_build DIR OUT PACKAGE [go build flags...]: a static, stripped binary.
go_build() {
  local dir=$1 out=$2 pkg=$3
  shift 3
  (cd "$here/go/$dir" && CGO_ENABLED=0 go build -trimpath "$@" -o "$out" "$pkg")
}

# Vault with the `minimal` build tag leaves out the cloud auth methods, secrets
# engines and storage backends (AWS, GCP, Azure, ...): its cold build on 2 cores
# (modules downloaded too) takes 444 s instead of 875 s. It keeps the core (kv,
# the database secrets engine, tokens); the two plugins we use beyond that are
# built from the versions Vault's go.mod pins and run as external plugins: dev
# mode registers each file in the folder given by -dev-plugin-dir under its file
# name, so `kubernetes` (auth) and `postgresql-database-plugin` (database) keep
# their usual names.
build_vault() {
  local folder=$1
  mkdir -p "$folder/plugins"
  go_build vault "$folder/vault" github.com/hashicorp/vault -tags minimal -ldflags="-s -w"
  go_build vault "$folder/plugins/kubernetes" \
    github.com/hashicorp/vault-plugin-auth-kubernetes/cmd/vault-plugin-auth-kubernetes -ldflags="-s -w"
  go_build vault "$folder/plugins/postgresql-database-plugin" \
    github.com/hashicorp/vault/plugins/database/postgresql/postgresql-database-plugin -ldflags="-s -w"
}

for line in "${servers[@]}"; do
  read -r name dir pkg version extra_ldflags <<<"$line"
  if [ ${#wanted[@]} -gt 0 ] && [[ ! " ${wanted[*]} " == *" $name "* ]]; then continue; fi
  out="$bin/$name-$version"
  [ "$name" = vault ] && out="$out/vault"
  if $print_only; then echo "$name $out"; continue; fi
  if [ -x "$out" ]; then echo "[servers] $name $version: cached ($out)"; continue; fi
  echo "[servers] building $name $version from $pkg (first time only; several minutes on 2 cores)..."
  start=$(date +%s)
  if [ "$name" = vault ]; then
    folder=$(dirname "$out")
    rm -rf "$folder.partial"
    build_vault "$folder.partial"
    mv "$folder.partial" "$folder"
  else
    go_build "$dir" "$out.partial" "$pkg" -ldflags="-s -w ${extra_ldflags:-}"
    mv "$out.partial" "$out"
  fi
  echo "[servers] built $name in $(( $(date +%s) - start ))s"
done
