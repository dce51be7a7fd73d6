#!/usr/bin/env bash
# Prints the `replace` block that maps every k8s.io/<staging repo> listed in
# k8s.io/kubernetes' own go.mod to its published v0.N.M release. Usage:
#   gen-kube-replaces.sh v1.36.3 >> kube/go.mod
set -euo pipefail
ver=${1:?usage: gen-kube-replaces.sh vMAJOR.MINOR.PATCH}
staging_ver="v0.${ver#v1.}"
modfile=$(go mod download -json "k8s.io/kubernetes@${ver}" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
echo "replace ("
sed -n '/^replace (/,/^)/p' "$modfile" | awk -v v="$staging_ver" '$2 == "=>" && $3 ~ /^\.\/staging/ { printf "\t%s => %s %s\n", $1, $1, v }'
echo ")"
