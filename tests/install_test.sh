#!/bin/sh
# cmake --install puts tpp-plan and its catalogs in a prefix, and the installed program finds
# its data there (the prefix is searched before the source tree it was built from).
# Usage: install_test.sh BUILD_DIR
set -eu
build=$1
prefix=$(mktemp -d)
trap 'rm -rf "$prefix"' EXIT
cmake --install "$build" --prefix "$prefix" >/dev/null
cd /
out=$("$prefix/bin/tpp-plan" --model r1 --cluster h100x2 --format json)
echo "$out" | grep -q "\"source\": \"$prefix/share/tpp/models/r1.yaml\"" ||
  { echo "model not read from the prefix:"; echo "$out" | grep '"source"'; exit 1; }
echo "$out" | grep -q "\"source\": \"$prefix/share/tpp/clusters/h100x2.yaml\"" ||
  { echo "cluster not read from the prefix"; exit 1; }
for d in models gpus clusters workloads; do
  [ -n "$(ls "$prefix/share/tpp/$d")" ] || { echo "empty $d catalog"; exit 1; }
done
echo "install test: OK ($prefix)"
