# raproxy container image: `docker build -t raproxy .`
#
# Build stage: Debian 12 with the project's own dependency script, wolfSSL rebuilt from
# Debian's source package with its fast paths and linked statically (-DRAPROXY_WOLFSSL=fast).
# Runtime stage: debian:12-slim with only the shared libraries the binary needs, non-root.
#
# The runtime package list below is checked by test/deploy/check_deploy.py (run by
# `make test` and at the end of the build stage): it must equal the Debian packages that own
# the libraries `ldd raproxy` reports, minus those debian:12-slim already has (its Essential
# packages, apt and their dependencies, e.g. libc6).

FROM debian:12 AS build
ENV DEBIAN_FRONTEND=noninteractive
WORKDIR /src
# Dependencies first: this layer is cached until the script changes.
COPY scripts/install-deps.sh scripts/install-deps.sh
RUN bash scripts/install-deps.sh && rm -rf /var/lib/apt/lists/*
COPY CMakeLists.txt Makefile Dockerfile ./
COPY scripts/ scripts/
COPY include/ include/
COPY src/ src/
COPY deploy/ deploy/
COPY test/deploy/ test/deploy/
# scripts/build-wolfssl.sh fetches Debian's wolfssl source package (deb-src from the image's
# own apt sources) and builds it into /src/.cache; CMake falls back to the system library if
# that fails, so the image refuses a binary that links libwolfssl dynamically.
RUN cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DRAPROXY_WOLFSSL=fast -DRAPROXY_TESTS=OFF \
 && cmake --build build -j"$(nproc)" --target raproxy \
 && strip --strip-unneeded build/raproxy \
 && if ldd build/raproxy | grep -q libwolfssl; then \
      echo "raproxy links libwolfssl dynamically: the fast wolfSSL build failed" >&2; exit 1; fi \
 && python3 test/deploy/check_deploy.py --only dockerfile . build/raproxy \
 && build/raproxy --version

FROM debian:12-slim
ARG UID=10001
# Exactly the packages owning the libraries of `ldd raproxy` that debian:12-slim lacks.
RUN apt-get update \
 && apt-get install -y --no-install-recommends libcyaml1 libhiredis0.14 libuv1 libyaml-0-2 \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid "$UID" raproxy \
 && useradd --system --uid "$UID" --gid raproxy --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin raproxy \
 && mkdir -p /etc/raproxy
COPY --from=build /src/build/raproxy /usr/local/bin/raproxy
# A starting point; mount the real configuration (and the files it names) over /etc/raproxy.
COPY deploy/raproxy.example.yaml /etc/raproxy/raproxy.yaml
LABEL org.opencontainers.image.title="raproxy" \
      org.opencontainers.image.description="CMP Registration Authority proxy" \
      org.opencontainers.image.base.name="docker.io/library/debian:12-slim"
# Numeric, so Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
USER 10001:10001
# 8443: CMP over HTTPS (devices). 9090: admin (/livez, /readyz, /metrics).
EXPOSE 8443 9090
# SIGTERM drains: /readyz 503, listeners closed, in-flight exchanges finish (shutdown_grace_s).
STOPSIGNAL SIGTERM
# debian:12-slim has no curl: raproxy probes itself.
HEALTHCHECK --interval=10s --timeout=5s --start-period=10s --retries=3 \
  CMD ["raproxy", "--probe", "http://127.0.0.1:9090/livez"]
ENTRYPOINT ["raproxy"]
CMD ["--config", "/etc/raproxy/raproxy.yaml"]
