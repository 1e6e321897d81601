#!/usr/bin/env bash
# Installs every build, test, demo and bench dependency from Debian 12's packages.
# Idempotent: does nothing (and needs no network) when everything is already there.
set -euo pipefail

PKGS=(
  build-essential cmake pkg-config clang llvm
  libuv1-dev libwolfssl-dev libhiredis-dev libcriterion-dev node-llhttp libcyaml-dev
  redis-server redis-tools openssl libssl-dev
  python3 python3-pyasn1 python3-pyasn1-modules python3-yaml
  curl procps iproute2
  dpkg-dev autoconf automake libtool # scripts/build-wolfssl.sh
  softhsm2 opensc gnutls-bin # PKCS#11 tests: a real token (SoftHSM2), pkcs11-tool, p11tool
  default-jdk-headless libbcpkix-java # Bouncy Castle's CMP classes as a device (test_delivery)
)

missing=()
for p in "${PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  SUDO="sudo"
fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
# Debian starts redis-server as a service on install; tests run their own instances.
if command -v systemctl >/dev/null 2>&1; then
  $SUDO systemctl disable --now redis-server >/dev/null 2>&1 || true
fi
