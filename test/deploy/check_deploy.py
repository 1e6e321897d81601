#!/usr/bin/python3
"""Static checks of raproxy's deployment files, since no container engine or cluster runs
in the test environment.

    check_deploy.py [--only PART[,PART…]] SOURCE_DIR RAPROXY_BINARY

PART: yaml, k8s, dockerfile, systemd, docs (default: all). Prints one line per failed check
("FAIL <file>: <what>") and a summary; exits 1 if any check failed.

Dockerfile runtime packages: the Debian packages owning the libraries `ldd raproxy` lists,
minus those every debian:12-slim image already has (the Essential packages, apt and their
dependencies, e.g. libc6), must equal the runtime stage's `apt-get install` list. A binary linked to the
system libwolfssl (RAPROXY_WOLFSSL=system, or a failed fast build) may differ by that one
package: the image always builds the static fast wolfSSL.
"""
import fnmatch
import glob
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from urllib.parse import urlparse

import yaml

CMP_PORT = 8443
ADMIN_PORT = 9090
DEFAULT_GRACE_S = 25
# The environment overrides raproxy implements (src/core/config_env.c); anything else in a
# manifest is a typo that raproxy would silently ignore.
KNOWN_ENV = {
    "RAPROXY_UPSTREAM_URL", "RAPROXY_REDIS_URL", "RAPROXY_LOG_LEVEL", "RAPROXY_LOOPS",
    "RAPROXY_WORKERS", "RAPROXY_ADMIN_ADDRESS", "RAPROXY_LISTEN_ADDRESS", "RAPROXY_TLS_CERT",
    "RAPROXY_TLS_KEY", "RAPROXY_RA_CERT", "RAPROXY_RA_KEY", "RAPROXY_RA_CHAIN",
    "RAPROXY_RA_PIN",
}
# Secrets passed in the environment: only from a Secret (valueFrom.secretKeyRef), never a
# literal in a manifest.
SECRET_ENV = {"RAPROXY_RA_PIN"}
ENV_PATH_KEYS = {"RAPROXY_TLS_CERT", "RAPROXY_TLS_KEY", "RAPROXY_RA_CERT", "RAPROXY_RA_KEY",
                 "RAPROXY_RA_CHAIN"}
# Containers allowed a writable root filesystem (WildFly writes under its install tree).
WRITABLE_ROOT_OK = {"ejbca"}

failures = []
notes = []
checks = 0


def fail(where, what):
    failures.append(f"FAIL {where}: {what}")


def check(cond, where, what):
    global checks
    checks += 1
    if not cond:
        fail(where, what)
    return bool(cond)


def rel(path):
    return os.path.relpath(path, SRC)


# ---------------------------------------------------------------- YAML everywhere

def load_docs(path):
    with open(path, encoding="utf-8") as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def check_yaml_files():
    files = sorted(glob.glob(os.path.join(SRC, "deploy", "**", "*.y*ml"), recursive=True))
    check(files, "deploy/", "no YAML files found")
    for p in files:
        try:
            docs = load_docs(p)
            check(docs, rel(p), "empty YAML file")
        except yaml.YAMLError as e:
            check(False, rel(p), f"does not parse: {e}")


# ---------------------------------------------------------------- raproxy configs

def port_of(address):
    """Port of "host:port" / "[v6]:port"."""
    m = re.match(r"^(?:\[[^\]]*\]|[^:]*):(\d+)$", str(address))
    return int(m.group(1)) if m else None


def is_pkcs11(v):
    """A key setting naming a key in a PKCS#11 token (RFC 7512), not a file."""
    return isinstance(v, str) and v.lower().startswith("pkcs11:")


def config_paths(cfg):
    """Every file a raproxy config names, with the key naming it (a key in a PKCS#11 token
    is listed with its URI: the files it needs are its pkcs11.module and pkcs11.pin_file)."""
    out = []

    def add(key, v):
        if isinstance(v, str) and v and v != "redis":
            out.append((key, v))

    def add_pkcs11(base, p11):
        if isinstance(p11, dict):
            for k in ("module", "pin_file"):
                add(f"{base}.pkcs11.{k}", p11.get(k))

    for i, l in enumerate(cfg.get("listeners") or []):
        tls = l.get("tls")
        if isinstance(tls, dict):
            for k in ("cert", "key", "client_ca"):
                add(f"listeners[{i}].tls.{k}", tls.get(k))
            add_pkcs11(f"listeners[{i}].tls", tls.get("pkcs11"))
    up = cfg.get("upstream") or {}
    for k in ("ca", "client_cert", "client_key", "ca_trust"):
        add(f"upstream.{k}", up.get(k))
    ra = cfg.get("ra") or {}
    for k in ("cert", "key", "chain"):
        add(f"ra.{k}", ra.get(k))
    add_pkcs11("ra", ra.get("pkcs11"))
    for d in cfg.get("domains") or []:
        n = d.get("name")
        for k in ("trust_anchors", "intermediates", "crls", "admins"):
            for j, v in enumerate(d.get(k) or []):
                add(f"domains[{n}].{k}[{j}]", v)
        for k in ("mac_secrets", "allowlist"):
            add(f"domains[{n}].{k}", d.get(k))
    return out


def apply_env(cfg, env):
    """The config as raproxy sees it after the environment overrides."""
    cfg = json.loads(json.dumps(cfg))
    listeners = cfg.setdefault("listeners", []) or []
    if not listeners and ({"RAPROXY_LISTEN_ADDRESS", "RAPROXY_TLS_CERT"} & env.keys()):
        listeners.append({"tls": {}})
    cfg["listeners"] = listeners
    if "RAPROXY_LISTEN_ADDRESS" in env:
        listeners[0]["address"] = env["RAPROXY_LISTEN_ADDRESS"]
    for var, key in (("RAPROXY_TLS_CERT", "cert"), ("RAPROXY_TLS_KEY", "key")):
        if var in env:
            if not isinstance(listeners[0].get("tls"), dict):
                listeners[0]["tls"] = {}
            listeners[0]["tls"][key] = env[var]
    if "RAPROXY_REDIS_URL" in env:
        cfg.setdefault("redis", {}) or cfg.__setitem__("redis", {})
        cfg["redis"]["url"] = env["RAPROXY_REDIS_URL"]
    if "RAPROXY_UPSTREAM_URL" in env:
        cfg.setdefault("upstream", {})["url"] = env["RAPROXY_UPSTREAM_URL"]
    if "RAPROXY_ADMIN_ADDRESS" in env:
        cfg.setdefault("admin", {})["address"] = env["RAPROXY_ADMIN_ADDRESS"]
    for var, key in (("RAPROXY_RA_CERT", "cert"), ("RAPROXY_RA_KEY", "key"),
                     ("RAPROXY_RA_CHAIN", "chain")):
        if var in env:
            cfg.setdefault("ra", {})[key] = env[var]
    return cfg


def load_example():
    p = os.path.join(SRC, "deploy", "raproxy.example.yaml")
    if not check(os.path.exists(p), "deploy/raproxy.example.yaml", "missing"):
        return None
    try:
        return yaml.safe_load(open(p, encoding="utf-8"))
    except yaml.YAMLError:
        return None  # reported by check_yaml_files


def check_config_vs_example(cfg, where, example, same_upstream):
    """A deployment config keeps the example's ports, paths and domains."""
    if example is None:
        return
    ex_l = [port_of(l.get("address")) for l in example.get("listeners") or []]
    cf_l = [port_of(l.get("address")) for l in cfg.get("listeners") or []]
    check(ex_l == cf_l, where, f"listener ports {cf_l} differ from the example's {ex_l}")
    check(CMP_PORT in cf_l, where, f"no listener on {CMP_PORT}")
    ex_a = port_of((example.get("admin") or {}).get("address"))
    cf_a = port_of((cfg.get("admin") or {}).get("address"))
    check(ex_a == cf_a == ADMIN_PORT, where,
          f"admin port {cf_a} (example {ex_a}, expected {ADMIN_PORT})")
    adm_host = str((cfg.get("admin") or {}).get("address", "")).rsplit(":", 1)[0]
    check(adm_host in ("0.0.0.0", "[::]", ""), where,
          f"admin listens on {adm_host}: the kubelet probes the pod IP, use 0.0.0.0")
    ex_paths = dict(config_paths(example))
    cf_paths = dict(config_paths(cfg))
    for key, path in cf_paths.items():
        if key in ex_paths and not is_pkcs11(path):
            check(ex_paths[key] == path, where,
                  f"{key} is {path}, the example has {ex_paths[key]}")
    for key, path in ex_paths.items():
        if ".pkcs11." in key:
            continue  # only with a key in a token
        check(key in cf_paths, where, f"{key} ({path}) of the example is missing")
    ex_d = [(d.get("name"), d.get("allow")) for d in example.get("domains") or []]
    cf_d = [(d.get("name"), d.get("allow")) for d in cfg.get("domains") or []]
    check(ex_d == cf_d, where, f"domains/allow {cf_d} differ from the example's {ex_d}")
    ex_u = urlparse(str((example.get("upstream") or {}).get("url", "")))
    cf_u = urlparse(str((cfg.get("upstream") or {}).get("url", "")))
    if same_upstream:
        check(ex_u.geturl() == cf_u.geturl(), where,
              f"upstream.url {cf_u.geturl()} differs from the example's {ex_u.geturl()}")
    else:
        check(cf_u.path == ex_u.path, where,
              f"upstream path {cf_u.path} differs from the example's {ex_u.path}")


# ---------------------------------------------------------------- kustomize (the subset used)

class Kustomization:
    def __init__(self, dirpath):
        self.dir = dirpath
        self.docs = []          # (source file, document)
        self.generated = {}     # (kind, name) -> {key: content or None}
        self.build(dirpath)

    def build(self, d):
        kfile = os.path.join(d, "kustomization.yaml")
        if not check(os.path.exists(kfile), rel(d), "no kustomization.yaml"):
            return
        try:
            k = yaml.safe_load(open(kfile, encoding="utf-8")) or {}
        except yaml.YAMLError:
            return
        where = rel(kfile)
        check(k.get("kind") == "Kustomization", where, "kind is not Kustomization")
        for r in k.get("resources") or []:
            p = os.path.normpath(os.path.join(d, r))
            if not check(os.path.exists(p), where, f"resource {r} does not exist"):
                continue
            if os.path.isdir(p):
                self.build(p)
            else:
                try:
                    self.docs += [(p, doc) for doc in load_docs(p)]
                except yaml.YAMLError:
                    pass
        for gen, kind in (("configMapGenerator", "ConfigMap"), ("secretGenerator", "Secret")):
            for g in k.get(gen) or []:
                self.generate(where, d, kind, g)
        for pt in k.get("patches") or []:
            self.patch(where, d, pt)
        for key in ("patchesStrategicMerge", "patchesJson6902", "bases", "vars"):
            check(key not in k, where, f"deprecated kustomize field {key}")

    def generate(self, where, d, kind, g):
        name = g.get("name")
        data = {}
        for f in g.get("files") or []:
            key, _, path = f.partition("=") if "=" in f else (os.path.basename(f), "", f)
            p = os.path.normpath(os.path.join(d, path))
            if os.path.exists(p):
                data[key] = open(p, encoding="utf-8", errors="replace").read()
            else:
                # Operator-supplied: the README.md next to it must say what goes there.
                readme = os.path.join(os.path.dirname(p), "README.md")
                ok = os.path.exists(readme) and os.path.basename(p) in open(readme).read()
                check(ok, where, f"{kind} {name}: {path} neither exists nor is documented "
                      f"as operator-supplied in {rel(readme)}")
                data[key] = None
        for lit in g.get("literals") or []:
            key, _, val = lit.partition("=")
            data[key] = val
        behavior = g.get("behavior", "create")
        ident = (kind, name)
        if behavior == "create":
            check(ident not in self.generated, where, f"{kind} {name} generated twice")
            self.generated[ident] = data
        elif behavior == "replace":
            check(ident in self.generated, where, f"{kind} {name}: nothing to replace")
            self.generated[ident] = data
        elif behavior == "merge":
            check(ident in self.generated, where, f"{kind} {name}: nothing to merge into")
            self.generated.setdefault(ident, {}).update(data)
        else:
            check(False, where, f"{kind} {name}: unknown behavior {behavior}")

    def patch(self, where, d, pt):
        text = pt.get("patch")
        if text is None and pt.get("path"):
            p = os.path.join(d, pt["path"])
            if not check(os.path.exists(p), where, f"patch {pt['path']} does not exist"):
                return
            text = open(p, encoding="utf-8").read()
        try:
            doc = yaml.safe_load(text)
        except yaml.YAMLError as e:
            check(False, where, f"patch does not parse: {e}")
            return
        if not isinstance(doc, dict) or doc.get("$patch") != "delete":
            check(False, where, "the checker understands only `$patch: delete` patches")
            return
        kind, name = doc.get("kind"), (doc.get("metadata") or {}).get("name")
        before = len(self.docs)
        self.docs = [(f, x) for f, x in self.docs
                     if not (x.get("kind") == kind and x.get("metadata", {}).get("name") == name)]
        check(len(self.docs) == before - 1, where, f"delete patch: no {kind} {name} to delete")

    def of_kind(self, kind):
        return [(f, x) for f, x in self.docs if x.get("kind") == kind]


def pod_spec(dep):
    return ((dep.get("spec") or {}).get("template") or {}).get("spec") or {}


def pod_labels(dep):
    return (((dep.get("spec") or {}).get("template") or {}).get("metadata") or {}).get("labels") or {}


def selects(selector, labels):
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def is_raproxy(c):
    return c.get("name") == "raproxy" or str(c.get("image", "")).split("/")[-1].startswith("raproxy")


def container_ports(c):
    return {p.get("name"): p.get("containerPort") for p in c.get("ports") or []}


def resolve_port(c, port):
    if isinstance(port, int):
        return port
    return container_ports(c).get(port)


def sleep_seconds(handler):
    """Seconds a preStop hook sleeps: exec ["sleep", N], ["/bin/sh","-c","sleep N"] or sleep:."""
    if not handler:
        return None
    if "sleep" in handler:
        return int(handler["sleep"].get("seconds", 0))
    cmd = (handler.get("exec") or {}).get("command") or []
    m = re.search(r"(?:^|\s|/)sleep\s+(\d+)\b", " ".join(map(str, cmd)))
    return int(m.group(1)) if m else None


def check_container_security(where, spec, c):
    pod_sc = spec.get("securityContext") or {}
    sc = c.get("securityContext") or {}
    name = c.get("name")
    w = f"{where} container {name}"
    non_root = sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot"))
    check(non_root is True, w, "securityContext.runAsNonRoot is not true")
    uid = sc.get("runAsUser", pod_sc.get("runAsUser"))
    check(uid != 0, w, "runs as uid 0")
    check(sc.get("allowPrivilegeEscalation") is False, w,
          "securityContext.allowPrivilegeEscalation is not false")
    drop = ((sc.get("capabilities") or {}).get("drop")) or []
    check("ALL" in drop, w, "securityContext.capabilities.drop lacks ALL")
    check(not ((sc.get("capabilities") or {}).get("add")), w, "adds capabilities")
    check(not sc.get("privileged"), w, "is privileged")
    if name not in WRITABLE_ROOT_OK:
        check(sc.get("readOnlyRootFilesystem") is True, w,
              "securityContext.readOnlyRootFilesystem is not true")
    res = c.get("resources") or {}
    for kind in ("requests", "limits"):
        for r in ("cpu", "memory"):
            check((res.get(kind) or {}).get(r) is not None, w, f"resources.{kind}.{r} missing")


def projected_files(spec, c):
    """Files a container sees through its volume mounts: {path: (kind, object, key)}."""
    vols = {v.get("name"): v for v in spec.get("volumes") or []}
    out = {}
    for m in c.get("volumeMounts") or []:
        v = vols.get(m.get("name"))
        if v is None:
            continue
        base = m.get("mountPath", "").rstrip("/")
        srcs = []
        if "projected" in v:
            srcs = v["projected"].get("sources") or []
        elif "configMap" in v:
            srcs = [{"configMap": v["configMap"]}]
        elif "secret" in v:
            srcs = [{"secret": dict(v["secret"], name=v["secret"].get("secretName"))}]
        for s in srcs:
            for kind, key in (("ConfigMap", "configMap"), ("Secret", "secret")):
                if key in s:
                    obj = s[key]
                    for it in obj.get("items") or []:
                        out[f"{base}/{it['path']}"] = (kind, obj.get("name"), it["key"])
        if m.get("subPath"):
            out.pop(base, None)
    return out


def mounted_dirs(spec, c):
    """{mountPath: volume} of a container."""
    vols = {v.get("name"): v for v in spec.get("volumes") or []}
    return {m.get("mountPath", "").rstrip("/"): vols.get(m.get("name"))
            for m in c.get("volumeMounts") or []}


def check_module_mount(w, key, path, spec, mounts):
    """A PKCS#11 module comes from a volume (the HSM vendor's library, not in raproxy's
    image): an emptyDir an init container fills, or another volume; SoftHSM2's own library
    from the softhsm2 package is the exception."""
    if path.startswith("/usr/lib/"):
        return
    base = max((m for m in mounts if path.startswith(m + "/")), key=len, default=None)
    if not check(base is not None, w, f"{key} {path} is under no volume mount"):
        return
    vol = mounts[base] or {}
    if "emptyDir" in vol:
        fillers = [ic for ic in spec.get("initContainers") or []
                   if any(m.get("name") == vol.get("name") for m in ic.get("volumeMounts") or [])]
        check(fillers, w, f"{key}: emptyDir {vol.get('name')} at {base} is filled by no init "
              f"container")
        for ic in fillers:
            check_container_security(f"{w} initContainer {ic.get('name')}", spec, ic)


def check_token_key(k, w, key, cfg, files):
    """A key in a token: a module and a PIN are configured, and no file of the key is
    mounted next to it (that would defeat the HSM)."""
    base = key.rsplit(".", 1)[0]
    sect = (cfg.get("ra") or {}) if base == "ra" else None
    if base.startswith("listeners["):
        i = int(base[len("listeners["):base.index("]")])
        sect = ((cfg.get("listeners") or [])[i] or {}).get("tls") or {}
        if not (sect.get("pkcs11") or {}):
            sect = cfg.get("ra") or {}  # a listener key in a token defaults to ra.pkcs11
    p11 = (sect or {}).get("pkcs11") or {}
    check(p11.get("module"), w, f"{key} is a PKCS#11 URI but no pkcs11.module is set")
    check(p11.get("pin_file") or "pin-source=" in str((sect or {}).get("key", "")), w,
          f"{key} is a PKCS#11 URI but no pkcs11.pin_file is set (RAPROXY_RA_PIN alone "
          f"would do only from a Secret)")
    if base == "ra":
        leaked = [p for p, src in files.items() if src[2] in ("ra.key",)]
        check(not leaked, w, f"{key} is in a token, yet a private key file is mounted: {leaked}")


def container_env(c):
    return {e["name"]: e.get("value") for e in c.get("env") or [] if "name" in e}


def check_k8s_target(k, where, example, standalone):
    deps = k.of_kind("Deployment")
    services = k.of_kind("Service")
    check(deps, where, "no Deployment")
    raproxy_deps = []
    for f, dep in deps:
        name = dep.get("metadata", {}).get("name")
        w = f"{rel(f)} Deployment {name}"
        spec = pod_spec(dep)
        containers = spec.get("containers") or []
        check(containers, w, "no containers")
        check(spec.get("automountServiceAccountToken") is False, w,
              "automountServiceAccountToken is not false")
        check(selects((dep.get("spec") or {}).get("selector", {}).get("matchLabels"),
                      pod_labels(dep)), w, "selector does not match the pod labels")
        for c in containers:
            check_container_security(w, spec, c)
        rps = [c for c in containers if is_raproxy(c)]
        if rps:
            raproxy_deps.append((f, dep))
        for c in rps:
            check_raproxy_container(k, w, dep, spec, c, containers, example, standalone)
        for c in containers:
            for e in c.get("env") or []:
                n = e.get("name", "")
                if n.startswith("RAPROXY_"):
                    check(n in KNOWN_ENV, w, f"{n} is not an environment override raproxy knows")
                if n in SECRET_ENV:
                    check("value" not in e and
                          ((e.get("valueFrom") or {}).get("secretKeyRef") or {}).get("name"), w,
                          f"{n} must come from a Secret (valueFrom.secretKeyRef), not a literal")
    check(raproxy_deps, where, "no Deployment runs raproxy")

    # Services: only raproxy's and Redis's ports, nothing of EJBCA.
    for f, svc in services:
        name = svc.get("metadata", {}).get("name")
        w = f"{rel(f)} Service {name}"
        sel = (svc.get("spec") or {}).get("selector") or {}
        targets = [(dep, c) for _, dep in deps if selects(sel, pod_labels(dep))
                   for c in pod_spec(dep).get("containers") or []]
        check(targets, w, "selects no pod")
        for sp in (svc.get("spec") or {}).get("ports") or []:
            tp = sp.get("targetPort", sp.get("port"))
            owners = [c for _, c in targets if resolve_port(c, tp) is not None]
            check(owners, w, f"targetPort {tp} is no container port of the selected pods")
            for c in owners:
                num = resolve_port(c, tp)
                check(is_raproxy(c) or c.get("name") == "redis", w,
                      f"exposes port {num} of container {c.get('name')} (EJBCA must not be exposed)")
                check(num != 8080, w, "exposes port 8080")
                if is_raproxy(c):
                    check(num in (CMP_PORT, ADMIN_PORT), w, f"exposes raproxy port {num}")

    # Redis URL points at a Service of this set.
    for f, dep in raproxy_deps:
        for c in pod_spec(dep).get("containers") or []:
            url = container_env(c).get("RAPROXY_REDIS_URL") if is_raproxy(c) else None
            if not url:
                continue
            u = urlparse(url)
            svc = [s for _, s in services if s.get("metadata", {}).get("name") == u.hostname]
            ok = svc and any(p.get("port") == (u.port or 6379)
                             for p in (svc[0].get("spec") or {}).get("ports") or [])
            check(ok, rel(f), f"RAPROXY_REDIS_URL {url} names no Service port of this set")

    if standalone:
        check_standalone(k, where, raproxy_deps)
    else:
        sidecars = [d for _, d in raproxy_deps
                    if any(c.get("name") == "ejbca" for c in pod_spec(d).get("containers") or [])]
        check(sidecars, where, "no pod with EJBCA and the raproxy sidecar")


def check_raproxy_container(k, w, dep, spec, c, containers, example, standalone):
    w = f"{w} container {c.get('name')}"
    ports = container_ports(c)
    check(CMP_PORT in ports.values(), w, f"no containerPort {CMP_PORT}")
    check(ADMIN_PORT in ports.values(), w, f"no containerPort {ADMIN_PORT}")
    for probe, path in (("livenessProbe", "/livez"), ("readinessProbe", "/readyz")):
        hg = (c.get(probe) or {}).get("httpGet") or {}
        check(hg.get("path") == path and resolve_port(c, hg.get("port")) == ADMIN_PORT, w,
              f"{probe} is not httpGet {path} on {ADMIN_PORT}")
    # Config: the mounted raproxy.yaml, after the environment overrides.
    files = projected_files(spec, c)
    args = c.get("args") or c.get("command") or []
    cfg_path = "/etc/raproxy/raproxy.yaml"
    if "--config" in args and args.index("--config") + 1 < len(args):
        cfg_path = args[args.index("--config") + 1]
    check(cfg_path == "/etc/raproxy/raproxy.yaml", w, f"config at {cfg_path}")
    src = files.get(cfg_path)
    if not check(src, w, f"{cfg_path} is not mounted from a ConfigMap"):
        return
    data = k.generated.get((src[0], src[1]))
    text = (data or {}).get(src[2])
    if not check(text, w, f"{src[0]} {src[1]} key {src[2]} not found in the kustomization"):
        return
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as e:
        check(False, w, f"{src[0]} {src[1]}/{src[2]} does not parse: {e}")
        return
    env = {n: v for n, v in container_env(c).items() if v is not None}
    cfg = apply_env(raw, env)
    cw = f"{w} config {src[1]}/{src[2]}"
    check_config_vs_example(raw, cw, example, same_upstream=not standalone)
    mounts = mounted_dirs(spec, c)
    for key, path in config_paths(cfg):
        if is_pkcs11(path):
            check_token_key(k, cw, key, cfg, files)
            continue
        if key.endswith(".pkcs11.module"):
            check_module_mount(cw, key, path, spec, mounts)
            continue
        f = files.get(path)
        if not check(f, cw, f"{key} {path} is not mounted into the container"):
            continue
        if key.endswith(".pkcs11.pin_file"):
            check(f[0] == "Secret", cw, f"{key} {path} comes from a {f[0]}, not a Secret")
        gen = k.generated.get((f[0], f[1]))
        check(gen is not None and f[2] in gen, cw,
              f"{key} {path}: {f[0]} {f[1]} has no key {f[2]}")
    for n in ENV_PATH_KEYS & env.keys():
        check(env[n] in files, w, f"{n}={env[n]} is not mounted")
    for l in cfg.get("listeners") or []:
        check(port_of(l.get("address")) in ports.values(), w,
              f"listener {l.get('address')} has no containerPort")
    adm = port_of((cfg.get("admin") or {}).get("address"))
    check(adm == ADMIN_PORT, w, f"admin port {adm} is not the probes' {ADMIN_PORT}")
    # Drain: terminationGracePeriodSeconds > preStop sleep + shutdown_grace_s.
    grace = int(cfg.get("shutdown_grace_s", DEFAULT_GRACE_S))
    pre = sleep_seconds((c.get("lifecycle") or {}).get("preStop"))
    tgps = spec.get("terminationGracePeriodSeconds", 30)
    if check(pre is not None and pre > 0, w, "no preStop sleep (endpoints need time to drop the pod)"):
        check(tgps > pre + grace, w,
              f"terminationGracePeriodSeconds {tgps} <= preStop {pre} + shutdown_grace_s {grace}")
    # Workers follow the CPU limit, not the node's core count.
    wk = next((e for e in c.get("env") or [] if e.get("name") == "RAPROXY_WORKERS"), None)
    check(wk is not None, w, "RAPROXY_WORKERS not set: raproxy would start one worker per node core")
    # Upstream in the pod: a port some other container of the pod declares; and nobody else
    # takes raproxy's ports in the shared network namespace.
    up = urlparse(str((cfg.get("upstream") or {}).get("url", "")))
    others = [o for o in containers if o is not c]
    for o in others:
        for p in container_ports(o).values():
            check(p not in (CMP_PORT, ADMIN_PORT), w,
                  f"container {o.get('name')} declares port {p}, raproxy's in this pod")
    if up.hostname in ("127.0.0.1", "localhost", "::1"):
        check(any((up.port or 80) in container_ports(o).values() for o in others), w,
              f"upstream {up.geturl()} is on loopback but no container of the pod declares "
              f"port {up.port or 80}")
        if not standalone:
            check(up.path.startswith("/ejbca/publicweb/cmp/"), w,
                  f"upstream path {up.path} is not an EJBCA CMP alias")
        # The upstream outlives raproxy's drain.
        for o in others:
            opre = sleep_seconds((o.get("lifecycle") or {}).get("preStop")) or 0
            check(opre >= (pre or 0) + grace, w,
                  f"container {o.get('name')} stops after {opre} s, before raproxy's drain "
                  f"({pre} + {grace} s) ends")
            check(tgps > opre, w, f"terminationGracePeriodSeconds {tgps} <= {o.get('name')}'s "
                  f"preStop {opre}")
    elif standalone:
        check(up.scheme == "https", w, f"external upstream {up.geturl()} is not https")
        check(bool((cfg.get("upstream") or {}).get("ca")), w,
              "https upstream without upstream.ca to verify it")


def check_standalone(k, where, raproxy_deps):
    for _, dep in raproxy_deps:
        name = dep["metadata"]["name"]
        w = f"{where} Deployment {name}"
        check(not any(c.get("name") == "ejbca" for c in pod_spec(dep).get("containers") or []),
              w, "runs EJBCA (the standalone tier fronts an external CA)")
        check(int((dep.get("spec") or {}).get("replicas", 1)) >= 2, w, "replicas < 2")
        hpas = [h for _, h in k.of_kind("HorizontalPodAutoscaler")
                if (h.get("spec") or {}).get("scaleTargetRef", {}).get("name") == name
                and h["spec"]["scaleTargetRef"].get("kind") == "Deployment"]
        if check(hpas, w, "no HorizontalPodAutoscaler targets it"):
            hs = hpas[0]["spec"]
            check(int(hs.get("minReplicas", 1)) >= 2, w, "HPA minReplicas < 2")
            check(int(hs.get("maxReplicas", 0)) >= int(hs.get("minReplicas", 1)), w,
                  "HPA maxReplicas < minReplicas")
        pdbs = [p for _, p in k.of_kind("PodDisruptionBudget")
                if selects((p.get("spec") or {}).get("selector", {}).get("matchLabels"),
                           pod_labels(dep))]
        if check(pdbs, w, "no PodDisruptionBudget selects its pods"):
            ps = pdbs[0]["spec"]
            check("minAvailable" in ps or "maxUnavailable" in ps, w,
                  "PDB without minAvailable/maxUnavailable")
            if isinstance(ps.get("minAvailable"), int):
                check(ps["minAvailable"] < int(dep["spec"].get("replicas", 1)), w,
                      "PDB minAvailable >= replicas: no node could ever be drained")


def check_k8s(example):
    base = os.path.join(SRC, "deploy", "k8s", "base")
    if check(os.path.isdir(base), "deploy/k8s", "no base/"):
        check_k8s_target(Kustomization(base), "deploy/k8s/base", example, standalone=False)
    sa = os.path.join(SRC, "deploy", "k8s", "overlays", "standalone")
    if check(os.path.isdir(sa), "deploy/k8s", "no overlays/standalone/"):
        check_k8s_target(Kustomization(sa), "deploy/k8s/overlays/standalone", example,
                         standalone=True)
    hsm = os.path.join(SRC, "deploy", "k8s", "overlays", "hsm")
    if check(os.path.isdir(hsm), "deploy/k8s", "no overlays/hsm/ (the RA key in an HSM)"):
        check_k8s_target(Kustomization(hsm), "deploy/k8s/overlays/hsm", example,
                         standalone=False)
    for d in ("deploy/k8s/base/secrets", "deploy/k8s/base/files",
              "deploy/k8s/overlays/hsm/secrets"):
        gi = os.path.join(SRC, d, ".gitignore")
        check(os.path.exists(gi) and "*" in open(gi).read().split(), d,
              "no .gitignore keeping operator files (keys) out of git")


# ---------------------------------------------------------------- Dockerfile

def dockerfile_instructions(path):
    lines, cur = [], ""
    for raw in open(path, encoding="utf-8"):
        s = raw.rstrip("\n")
        if not cur and (not s.strip() or s.lstrip().startswith("#")):
            continue
        if cur and s.lstrip().startswith("#"):
            continue
        if s.endswith("\\"):
            cur += s[:-1] + " "
            continue
        cur += s
        lines.append(cur.strip())
        cur = ""
    if cur.strip():
        lines.append(cur.strip())
    out = []
    for l in lines:
        op, _, rest = l.partition(" ")
        out.append((op.upper(), rest.strip()))
    return out


def exec_form(where, op, rest):
    try:
        v = json.loads(rest)
        if isinstance(v, list) and all(isinstance(x, str) for x in v):
            return v
    except json.JSONDecodeError:
        pass
    check(False, where, f"{op} is not in exec (JSON array) form: {rest}")
    return []


def dockerignore_excludes(path):
    """Whether .dockerignore keeps a context path out (Docker's last-match-wins rules)."""
    di = os.path.join(SRC, ".dockerignore")
    if not os.path.exists(di):
        return False
    excluded = False
    for raw in open(di):
        pat = raw.strip()
        if not pat or pat.startswith("#"):
            continue
        neg = pat.startswith("!")
        pat = pat[1:] if neg else pat
        pat = pat.strip("/")
        parts = path.split("/")
        hit = any(fnmatch.fnmatch("/".join(parts[:i]), pat) for i in range(1, len(parts) + 1))
        if hit:
            excluded = not neg
    return excluded


def ldd_packages(binary):
    """({package}, {package: [libs]}) owning the libraries the binary loads."""
    r = subprocess.run(["ldd", binary], capture_output=True, text=True)
    check(r.returncode == 0, "ldd", f"ldd {binary} failed: {r.stderr.strip()}")
    pkgs = {}
    for line in r.stdout.splitlines():
        line = line.strip()
        if "not found" in line:
            check(False, "ldd", f"{binary}: {line}")
            continue
        m = re.match(r"^(\S+)\s+=>\s+(\S+)\s+\(", line) or re.match(r"^(/\S+)\s+\(", line)
        if not m:
            continue  # linux-vdso.so.1
        lib = m.group(m.lastindex)
        if re.search(r"/lib(asan|ubsan|lsan|tsan)\.so", lib):
            continue  # a sanitizer build's runtime: the image is built without sanitizers
        cands = [lib, os.path.realpath(lib)]
        for c in list(cands):
            if c.startswith("/usr/lib/"):
                cands.append(c[4:])
            elif c.startswith("/lib"):
                cands.append("/usr" + c)
        owner = None
        for c in cands:
            q = subprocess.run(["dpkg", "-S", c], capture_output=True, text=True)
            if q.returncode == 0:
                owner = q.stdout.split(":")[0].strip()
                break
        if check(owner, "ldd", f"no Debian package owns {lib} (dpkg -S)"):
            pkgs.setdefault(owner, []).append(lib)
    return pkgs


_slim = None


def in_slim_base(pkg):
    """Whether debian:12-slim already has pkg. The image is a minbase: the Essential
    packages, apt, and what they depend on. Computed from dpkg's database (installed
    packages' Essential, Pre-Depends and Depends), so it needs no apt lists; the packages'
    own Priority fields are not reliable (libc6 says "optional", the archive "required")."""
    global _slim
    if _slim is None:
        q = subprocess.run(["dpkg-query", "-W", "-f",
                            "${Package}\t${Essential}\t${Pre-Depends}, ${Depends}\t${Status}\n"],
                           capture_output=True, text=True)
        deps, roots = {}, {"apt"}
        for line in q.stdout.splitlines():
            name, ess, dep, status = (line.split("\t") + ["", "", "", ""])[:4]
            if "installed" not in status.split():
                continue
            deps[name] = [[re.split(r"[\s(:]", alt.strip())[0] for alt in d.split("|")]
                          for d in dep.split(",") if d.strip()]
            if ess == "yes":
                roots.add(name)
        _slim, todo = set(), [r for r in roots if r in deps]
        while todo:
            n = todo.pop()
            if n in _slim:
                continue
            _slim.add(n)
            for alts in deps.get(n, []):
                todo += [a for a in alts if a in deps][:1]
    return pkg in _slim


def apt_installs(run):
    pkgs = []
    for part in re.split(r"&&|\|\||;|\|", run):
        try:
            words = shlex.split(part)
        except ValueError:
            words = part.split()
        if len(words) >= 2 and words[0] in ("apt-get", "apt") and "install" in words:
            after = words[words.index("install") + 1:]
            pkgs += [w for w in after if not w.startswith("-")]
    return pkgs


def check_dockerfile(binary, help_text):
    path = os.path.join(SRC, "Dockerfile")
    if not check(os.path.exists(path), "Dockerfile", "missing"):
        return
    ins = dockerfile_instructions(path)
    stages = []
    for op, rest in ins:
        if op == "FROM":
            stages.append({"from": rest, "ins": []})
        elif stages:
            stages[-1]["ins"].append((op, rest))
    if not check(len(stages) >= 2, "Dockerfile", "not multi-stage"):
        return
    build, runtime = stages[0], stages[-1]
    check(build["from"].split()[0] in ("debian:12", "debian:bookworm"), "Dockerfile",
          f"build stage FROM {build['from']}, not debian:12")
    check(runtime["from"].split()[0] in ("debian:12-slim", "debian:bookworm-slim"),
          "Dockerfile", f"runtime stage FROM {runtime['from']}, not debian:12-slim")
    runs = " && ".join(r for op, r in build["ins"] if op == "RUN")
    check("scripts/install-deps.sh" in runs, "Dockerfile", "build stage does not run scripts/install-deps.sh")
    check("RAPROXY_WOLFSSL=fast" in runs, "Dockerfile", "build stage does not build with -DRAPROXY_WOLFSSL=fast")
    # COPY sources exist in the context and are not excluded by .dockerignore.
    for st in stages:
        for op, rest in st["ins"]:
            if op not in ("COPY", "ADD"):
                continue
            words = shlex.split(rest)
            if any(w.startswith("--from") for w in words):
                continue
            srcs = [w for w in words if not w.startswith("--")][:-1]
            for s in srcs:
                found = glob.glob(os.path.join(SRC, s))
                check(found, "Dockerfile", f"{op} source {s} does not exist")
                for fp in found:
                    check(not dockerignore_excludes(rel(fp)), "Dockerfile",
                          f"{op} source {s} is excluded by .dockerignore")
    # Runtime packages = the binary's libraries.
    listed = []
    for op, rest in runtime["ins"]:
        if op == "RUN":
            listed += apt_installs(rest)
    check(listed == sorted(set(listed)), "Dockerfile",
          f"runtime packages not sorted and unique: {listed}")
    needed = ldd_packages(binary)
    need = {p for p in needed if not in_slim_base(p)}
    base = sorted(p for p in needed if p not in need)
    missing = sorted(need - set(listed))
    extra = sorted(set(listed) - need)
    wolf = [p for p in missing if re.fullmatch(r"libwolfssl\d+", p)]
    if wolf:
        notes.append(f"{binary} links the system {wolf[0]}; the image links the fast "
                     "static wolfSSL and does not install it")
        missing = [p for p in missing if p not in wolf]
    check(not missing, "Dockerfile", f"runtime stage lacks {missing} "
          f"(needed by {', '.join(l for p in missing for l in needed[p])})")
    check(not extra, "Dockerfile", f"runtime stage installs {extra}, which {binary} does not need")
    notes.append(f"{binary} needs {sorted(need)} beyond debian:12-slim (which has {base})")
    # Entrypoint, command and health check.
    rt = dict()
    for op, rest in runtime["ins"]:
        rt.setdefault(op, []).append(rest)
    ep = exec_form("Dockerfile", "ENTRYPOINT", (rt.get("ENTRYPOINT") or ["[]"])[-1])
    check(ep == ["raproxy"], "Dockerfile", f'ENTRYPOINT is {ep}, not ["raproxy"]')
    cmd = exec_form("Dockerfile", "CMD", (rt.get("CMD") or ["[]"])[-1])
    check(cmd[:2] == ["--config", "/etc/raproxy/raproxy.yaml"], "Dockerfile",
          f"CMD {cmd} does not read /etc/raproxy/raproxy.yaml")
    hc = (rt.get("HEALTHCHECK") or [""])[-1]
    m = re.search(r"\bCMD\s+(\[.*\])\s*$", hc)
    hcmd = exec_form("Dockerfile", "HEALTHCHECK CMD", m.group(1) if m else hc)
    check(hcmd[:1] == ["raproxy"] and any(f":{ADMIN_PORT}/livez" in a for a in hcmd),
          "Dockerfile", f"HEALTHCHECK {hcmd} does not probe /livez on {ADMIN_PORT} with raproxy")
    for flag in [a.split("=")[0] for a in ep + cmd + hcmd if a.startswith("-")]:
        check(re.search(r"(?<![\w-])" + re.escape(flag) + r"(?![\w-])", help_text),
              "Dockerfile", f"flag {flag} does not appear in `raproxy --help`")
    user = (rt.get("USER") or [""])[-1].split(":")[0]
    check(user and user not in ("root", "0"), "Dockerfile", f"USER {user or '(none)'} is root")
    check(user.isdigit(), "Dockerfile", "USER is not numeric (runAsNonRoot cannot verify names)")
    exposed = {int(p.split("/")[0]) for r in rt.get("EXPOSE", []) for p in r.split()}
    check({CMP_PORT, ADMIN_PORT} <= exposed, "Dockerfile", f"EXPOSE {sorted(exposed)} lacks "
          f"{CMP_PORT} or {ADMIN_PORT}")
    copies = [r for r in rt.get("COPY", []) if "--from=" in r]
    check(any(r.split()[-1] in ("/usr/local/bin/raproxy", "/usr/local/bin/", "/usr/bin/raproxy")
              for r in copies), "Dockerfile", "runtime stage does not copy raproxy onto PATH")


# ---------------------------------------------------------------- systemd

def check_systemd(binary, help_text):
    path = os.path.join(SRC, "deploy", "systemd", "raproxy.service")
    where = "deploy/systemd/raproxy.service"
    if not check(os.path.exists(path), where, "missing"):
        return
    sect, kv = None, {}
    for raw in open(path):
        s = raw.strip()
        if not s or s[0] in "#;":
            continue
        if s.startswith("["):
            sect = s.strip("[]")
            continue
        k, _, v = s.partition("=")
        kv.setdefault((sect, k.strip()), []).append(v.strip())

    def one(k):
        return (kv.get(("Service", k)) or [None])[-1]

    yes = ("yes", "true", "1", "on")
    check(one("DynamicUser") in yes, where, "DynamicUser is not yes")
    check(one("ProtectSystem") == "strict", where, "ProtectSystem is not strict")
    check(one("NoNewPrivileges") in yes, where, "NoNewPrivileges is not yes")
    reload = kv.get(("Service", "ExecReload")) or []
    check(any(re.search(r"kill\s+(-HUP|-s\s*HUP|-SIGHUP|--signal[= ]HUP)\s+\$MAINPID", r)
              for r in reload), where, "no ExecReload sending SIGHUP to $MAINPID")
    start = one("ExecStart") or ""
    check("/etc/raproxy/raproxy.yaml" in start, where, "ExecStart does not read /etc/raproxy/raproxy.yaml")
    for line in (kv.get(("Service", "ExecStart")) or []) + (kv.get(("Service", "ExecStartPre")) or []) + reload:
        if "raproxy" in line.split()[0]:
            for flag in [w for w in line.split()[1:] if w.startswith("-")]:
                check(flag in help_text, where, f"flag {flag} does not appear in `raproxy --help`")
    tss = one("TimeoutStopSec")
    check(tss is not None and re.fullmatch(r"\d+s?", tss) and int(tss.rstrip("s")) > DEFAULT_GRACE_S,
          where, f"TimeoutStopSec {tss} does not exceed shutdown_grace_s {DEFAULT_GRACE_S}")
    for var in re.findall(r"Environment=(RAPROXY_\w+)", open(path).read()):
        check(var in KNOWN_ENV, where, f"{var} is not an environment override raproxy knows")
    # systemd's own verdict, with the unit pointing at the binary under test.
    sa = shutil.which("systemd-analyze")
    if sa:
        with tempfile.TemporaryDirectory() as td:
            unit = os.path.join(td, "raproxy.service")
            with open(unit, "w") as f:
                f.write(open(path).read().replace("/usr/local/bin/raproxy", os.path.abspath(binary)))
            r = subprocess.run([sa, "verify", unit], capture_output=True, text=True)
            msgs = [l for l in (r.stdout + r.stderr).splitlines() if l.strip()
                    and "raproxy.service" in l]
            check(not msgs, where, "systemd-analyze verify: " + "; ".join(msgs))
    else:
        notes.append("systemd-analyze not installed: unit syntax not verified by systemd")


# ---------------------------------------------------------------- docs

def check_docs():
    for p in ("deploy/README.md", "deploy/ejbca/README.md"):
        check(os.path.exists(os.path.join(SRC, p)), p, "missing")
    ej = os.path.join(SRC, "deploy/ejbca/README.md")
    if os.path.exists(ej):
        t = open(ej).read()
        for word in ("RA mode", "EndEntityCertificate", "allowraverifypopo",
                     "vendorcertificatemode", "/ejbca/publicweb/cmp/"):
            check(word in t, "deploy/ejbca/README.md", f"does not cover {word}")
    dr = os.path.join(SRC, "deploy/README.md")
    if os.path.exists(dr):
        t = open(dr).read()
        used = set()
        for p in glob.glob(os.path.join(SRC, "deploy", "**", "*"), recursive=True):
            if os.path.isfile(p) and not p.endswith(".md"):
                used |= set(re.findall(r"\bRAPROXY_[A-Z_]+\b", open(p, errors="replace").read()))
        for v in sorted(used):
            check(v in t, "deploy/README.md", f"does not document {v}, used in deploy/")


# ---------------------------------------------------------------- main

def main(argv):
    global SRC
    only = None
    if len(argv) > 1 and argv[1] == "--only":
        only = set(argv[2].split(","))
        argv = argv[:1] + argv[3:]
    if len(argv) != 3:
        print(__doc__.strip().splitlines()[3], file=sys.stderr)
        return 2
    SRC = os.path.abspath(argv[1])
    binary = argv[2]
    help_text = ""
    if not only or only & {"dockerfile", "systemd"}:
        r = subprocess.run([binary, "--help"], capture_output=True, text=True, timeout=10)
        help_text = r.stdout + r.stderr
        check(r.returncode == 0 and "--config" in help_text, binary,
              f"`raproxy --help` failed (exit {r.returncode})")
    want = lambda part: not only or part in only
    if want("yaml"):
        check_yaml_files()
    if want("k8s"):
        check_k8s(load_example())
    if want("dockerfile"):
        check_dockerfile(binary, help_text)
    if want("systemd"):
        check_systemd(binary, help_text)
    if want("docs"):
        check_docs()
    for n in notes:
        print(f"note: {n}")
    for f in failures:
        print(f)
    print(f"check_deploy: {checks} checks, {len(failures)} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
