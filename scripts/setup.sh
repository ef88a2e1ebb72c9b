#!/usr/bin/env bash
# Installs what tpp needs to build and test, from Debian 12 packages. Skips apt when everything
# is already installed. Run as root (or with sudo available).
set -euo pipefail

PACKAGES=(
  cmake ninja-build g++ pkg-config
  libyaml-cpp-dev libeigen3-dev libcli11-dev nlohmann-json3-dev libfmt-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  libopenmpi-dev openmpi-bin
  graphviz gnuplot-nox
  chromium  # scripts/render_report.sh: a report as a browser shows it
  procps  # pgrep: the executor tests find and kill a rank
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all ${#PACKAGES[@]} packages already installed"
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
echo "setup: installing ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
