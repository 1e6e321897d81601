#!/usr/bin/env bash
# Builds the "fast" wolfSSL that raproxy links statically: Debian's own source package for
# the installed libwolfssl-dev (with all of Debian's patches, security backports included),
# configured lean — only what raproxy uses — plus wolfSSL's fast paths: single-precision
# math for P-256/P-384/P-521 and RSA 2048-4096, its x86-64 assembly, the Intel assembly
# (AVX/BMI2 chosen at run time by CPUID) and AES-NI.
#
# Lean, because every feature of Debian's configuration (--enable-distro and friends) costs
# memory in each TLS session or thread: its session certificates (SESSION_CERTS) keep the
# peer's whole chain in every session (9 × 2 KiB), its fixed-point ECC cache (FP_ECC) is
# ~1.4 MiB of thread-local storage carved out of every thread's stack, and the OpenSSL
# compatibility layer (OPENSSL_EXTRA/ALL) forces KEEP_PEER_CERT, a 4.4 KiB decoded
# certificate inside every WOLFSSL object. What raproxy calls and the build keeps: TLS
# 1.2/1.3 with ECDHE (X25519, P-256, P-384) and session tickets, SNI; ECDSA P-256/384/521,
# Ed25519, RSA with PSS; X.509 verification through the certificate manager with CRLs, a
# CA's TLS certificate checked against an IP address too (upstream.url by IP);
# OCSP; certificate and request generation (bench, test PKI); PBKDF2 and HMAC (PBM);
# PKCS#11 and crypto callbacks (HSM-held RA keys). src/proto/tls.c uses wolfSSL's native
# API only. Entropy comes from getrandom(2), so a process at its descriptor limit can still
# start a TLS session (no /dev/urandom open per session).
#
#   scripts/build-wolfssl.sh [CACHE_DIR]      default: <source>/.cache
#
# Installs into CACHE_DIR/wolfssl-<debian version>-fast (include/, lib/libwolfssl.a,
# lib/pkgconfig/wolfssl.pc) and prints that prefix as its last line of standard output.
# Idempotent and cached: when the prefix was already built from the same version and
# options it prints the prefix and does nothing else. Build trees share the one cache.
# Never touches the system's apt configuration: the source package is fetched through a
# private apt configuration (its own sources, lists and cache under CACHE_DIR).
#
# Environment: JOBS (default: nproc), RP_WOLFSSL_SOURCES (a deb822 .sources file with
# deb-src entries to use instead of the ones derived from the system's deb entries).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cache=${1:-$root/.cache}
jobs=${JOBS:-$(nproc)}
log() { echo "build-wolfssl: $*" >&2; }
die() { log "error: $*"; exit 1; }

[ "$(uname -m)" = x86_64 ] || die "the fast paths are x86-64 assembly; this is $(uname -m)"
for tool in apt-get dpkg-query dpkg-source autoreconf libtoolize make cc; do
  command -v "$tool" >/dev/null 2>&1 || die "$tool is missing (scripts/install-deps.sh installs it)"
done

# The version of the package raproxy would otherwise use: build exactly that one.
version=$(dpkg-query -W -f='${source:Version}' libwolfssl-dev 2>/dev/null) ||
  die "libwolfssl-dev is not installed"
[ -n "$version" ] || die "cannot tell libwolfssl-dev's source version"

# What raproxy uses (see the top of this file), nothing else. Static only, position
# independent (raproxy is PIE).
lean_opts=(--enable-tls13 --disable-oldtls --enable-session-ticket --enable-sni
  --enable-supportedcurves --enable-ecc --enable-curve25519 --enable-ed25519 --enable-rsapss
  --disable-dh --enable-aesgcm --enable-chacha --enable-poly1305 --enable-sha384 --enable-sha512
  --enable-crl --enable-ocsp --enable-certgen --enable-certreq --enable-certext --enable-keygen
  --enable-pwdbased --enable-ip-alt-name --enable-pkcs11 --enable-cryptocb
  --disable-oldnames --disable-sys-ca-certs)
# Fast paths.
fast_opts=(--enable-sp=yes --enable-sp-asm --enable-intelasm --enable-aesni)
# Per session: no peer certificate kept (raproxy copies the peer's leaf in its verify
# callback, which wolfSSL then calls for every certificate), a verification depth that fits
# device and CA chains; entropy without a descriptor. wolfSSL_get_session returns the
# session itself and wolfSSL_SESSION_dup copies it (HAVE_EXT_CACHE), as in Debian's build:
# the upstream client keeps a copy of its last ticket to resume the next connection.
lean_cppflags="-DWOLFSSL_GETRANDOM -DMAX_CHAIN_DEPTH=6 -DWOLFSSL_ALWAYS_VERIFY_CB -DNO_SESSION_CACHE_REF -DHAVE_EXT_CACHE"
build_opts=(--enable-static --disable-shared --with-pic
  --disable-crypttests --disable-benchmark --disable-examples
  --disable-dependency-tracking --disable-maintainer-mode)
# Debian's CFLAGS (hardening=+all as in debian/rules), without -g: the library is linked
# into raproxy statically and its debug info would only grow every binary.
if command -v dpkg-buildflags >/dev/null 2>&1; then
  cflags=$(DEB_BUILD_MAINT_OPTIONS=hardening=+all dpkg-buildflags --get CFLAGS | sed 's/\(^\| \)-g\( \|$\)/ /; s/-ffile-prefix-map=[^ ]*//')
  cppflags=$(DEB_BUILD_MAINT_OPTIONS=hardening=+all dpkg-buildflags --get CPPFLAGS)
else
  cflags="-O2 -fstack-protector-strong -Wformat -Werror=format-security"
  cppflags="-D_FORTIFY_SOURCE=2"
fi
recipe="v3 $version | ${lean_opts[*]} | ${fast_opts[*]} | ${build_opts[*]} | $lean_cppflags | $cflags | $cppflags"

prefix=$cache/wolfssl-$version-fast
work=$cache/wolfssl-$version-work
stamp=$prefix/.raproxy-build
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$recipe" ] && [ -f "$prefix/lib/libwolfssl.a" ]; then
  log "up to date: $prefix"
  echo "$prefix"
  exit 0
fi

mkdir -p "$cache"
# Two build trees configuring at once (build, build-asan) must not build twice.
exec 9>"$cache/wolfssl.lock"
flock 9
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$recipe" ] && [ -f "$prefix/lib/libwolfssl.a" ]; then
  log "up to date: $prefix"
  echo "$prefix"
  exit 0
fi
started=$(date +%s)
rm -rf "$work" "$prefix"
mkdir -p "$work/apt/sources.list.d" "$work/apt/lists/partial" "$work/apt/cache/archives/partial" "$work/dl"

# deb-src entries: the system's own deb entries (same mirrors, suites, keys) as deb-src.
srcs=$work/apt/sources.list.d
if [ -n "${RP_WOLFSSL_SOURCES:-}" ]; then
  cp "$RP_WOLFSSL_SOURCES" "$srcs/custom.sources"
else
  n=0
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$f" ] || continue
    n=$((n + 1))
    sed -n 's/^[[:space:]]*deb\(-src\)\?[[:space:]]/deb-src /p' "$f" | sort -u >"$srcs/sys$n.list"
  done
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    n=$((n + 1))
    sed 's/^Types:.*/Types: deb-src/' "$f" >"$srcs/sys$n.sources"
  done
  if ! cat "$srcs"/* 2>/dev/null | grep -q .; then
    codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
    [ -n "$codename" ] || die "no apt sources and no VERSION_CODENAME to guess Debian's"
    cat >"$srcs/debian.sources" <<EOF
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: $codename $codename-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb-src
URIs: http://deb.debian.org/debian-security
Suites: $codename-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  fi
fi
apt_opts=(-o Dir::Etc::SourceList=/dev/null -o Dir::Etc::SourceParts="$srcs"
  -o Dir::State::Lists="$work/apt/lists" -o Dir::Cache="$work/apt/cache"
  -o Dir::Cache::pkgcache= -o Dir::Cache::srcpkgcache= -o Debug::NoLocking=1)
# apt drops to the _apt user to download; that user cannot write to a root-owned tree.
[ "$(id -u)" -eq 0 ] && apt_opts+=(-o APT::Sandbox::User=root)

log "fetching Debian's source package wolfssl $version"
# A third-party repository without deb-src makes update fail; what matters is the source.
apt-get "${apt_opts[@]}" -qq update >"$work/apt-update.log" 2>&1 || log "apt-get update reported errors (see $work/apt-update.log)"
(cd "$work/dl" && apt-get "${apt_opts[@]}" -qq source --download-only "wolfssl=$version") >"$work/apt-source.log" 2>&1 ||
  { tail -n 5 "$work/apt-update.log" "$work/apt-source.log" >&2; die "cannot download the source of wolfssl $version"; }
# apt checked the files against the signed Sources index; dpkg-source applies Debian's patches.
dpkg-source -x "$work"/dl/wolfssl_*.dsc "$work/src" >"$work/dpkg-source.log" 2>&1 ||
  { cat "$work/dpkg-source.log" >&2; die "dpkg-source -x failed"; }
log "applied $(grep -c 'applying' "$work/dpkg-source.log" || true) Debian patches"

log "options:    ${lean_opts[*]} $lean_cppflags"
log "fast paths: ${fast_opts[*]}"

cd "$work/src"
# As dh_autoreconf does (the orig tarball ships no configure); autogen.sh's placeholders first.
bash ./autogen.sh >"$work/autoreconf.log" 2>&1 || { tail -20 "$work/autoreconf.log" >&2; die "autogen.sh failed"; }
./configure --prefix="$prefix" --libdir="$prefix/lib" "${lean_opts[@]}" "${fast_opts[@]}" "${build_opts[@]}" \
  CFLAGS="$cflags" CPPFLAGS="$cppflags $lean_cppflags" >"$work/configure.log" 2>&1 ||
  { tail -30 "$work/configure.log" >&2; die "configure failed (log: $work/configure.log)"; }
# Only the static library (some option sets force a shared one too).
sed -i 's/^build_libtool_libs=yes/build_libtool_libs=no/' libtool

log "compiling (-j$jobs)"
make -j"$jobs" src/libwolfssl.la >"$work/make.log" 2>&1 || { tail -30 "$work/make.log" >&2; die "make failed (log: $work/make.log)"; }
make install-libLTLIBRARIES install-includeHEADERS install-nobase_includeHEADERS install-pkgconfigDATA \
  >>"$work/make.log" 2>&1 || { tail -30 "$work/make.log" >&2; die "make install failed"; }
# A distro build does not install options.h (multi-arch); Debian's .install file copies it.
install -m 644 wolfssl/options.h "$prefix/include/wolfssl/options.h"
install -m 644 cyassl/options.h "$prefix/include/cyassl/options.h"

# The point of the exercise: refuse a build without the fast paths, without what raproxy
# (or issue 19's PKCS#11 keys) uses, or with the per-session and per-thread weight it must
# not carry.
opt_h=$prefix/include/wolfssl/options.h
for d in WOLFSSL_HAVE_SP_ECC WOLFSSL_HAVE_SP_RSA WOLFSSL_SP_384 WOLFSSL_SP_521 WOLFSSL_SP_X86_64_ASM \
  WOLFSSL_SP_ASM USE_INTEL_SPEEDUP WOLFSSL_AESNI WOLFSSL_TLS13 HAVE_ECC HAVE_ECC384 HAVE_ECC521 \
  HAVE_CURVE25519 HAVE_ED25519 WC_RSA_PSS HAVE_CRL HAVE_OCSP WOLFSSL_CERT_GEN WOLFSSL_CERT_REQ \
  WOLFSSL_CERT_EXT WOLFSSL_KEY_GEN HAVE_SESSION_TICKET HAVE_SNI HAVE_SUPPORTED_CURVES \
  HAVE_AESGCM HAVE_CHACHA HAVE_POLY1305 HAVE_PKCS11 WOLF_CRYPTO_CB WOLFSSL_GETRANDOM WOLFSSL_IP_ALT_NAME \
  MAX_CHAIN_DEPTH WOLFSSL_ALWAYS_VERIFY_CB NO_SESSION_CACHE_REF HAVE_EXT_CACHE; do
  grep -q "^#define $d\b" "$opt_h" || die "$opt_h lacks $d"
done
for d in FP_ECC SESSION_CERTS KEEP_PEER_CERT OPENSSL_EXTRA WOLFSSL_SMALL_STACK; do
  ! grep -q "^#define $d\b" "$opt_h" || die "$opt_h defines $d (per-session or per-thread memory)"
done
[ -f "$prefix/lib/libwolfssl.a" ] || die "no libwolfssl.a installed"
[ ! -e "$prefix/lib/libwolfssl.so" ] || die "a shared library was installed; raproxy must link statically"

echo "$recipe" >"$stamp"
# Keep the downloaded source package (small) and drop the build tree (large).
rm -rf "$work/src" "$work/apt/lists" "$work/apt/cache"
log "built in $(($(date +%s) - started)) s: $prefix"
echo "$prefix"
