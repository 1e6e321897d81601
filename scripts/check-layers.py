#!/usr/bin/env python3
"""The layering of raproxy, checked (the ctest test `layering`).

usage: check-layers.py BUILD/layers.txt SOURCE_DIR

The manifest is written by CMake from the explicit lists of src/CMakeLists.txt (and of
test/ and bench/): one `layer NAME LIBRARY USES AS` line per group of files, then its
`file NAME PATH` lines. A group stands where the layer AS stands; the real layers stand in
the order they appear (DESIGN.md's: core, cmp, proto, net, ra, then the programs).

What must hold:
  - every C file of src/, include/raproxy/, test/ and bench/ is in exactly one list;
  - a file includes only headers of its own layer and of the layers before it; the internal
    headers of src/<layer>/ only from that layer (and its tests);
  - a third-party header (<uv.h>, <hiredis/...>, <wolfssl/...>, <llhttp.h>, <yaml.h>,
    <cyaml/...>) only where its group's USES names the library ("*": not checked);
  - a layer's library refers to no symbol that a later layer's library defines, and to no
    third-party library its USES does not name;
  - names say who may call them: every global symbol a layer's library defines is either
    rp_<module>_<verb>, declared in a header of include/raproxy/ (the layer's API), or carries
    the layer's own prefix (core_, cmp_, proto_, net_, ra_, tool_: its internals, declared in
    its private header); no library uses another layer's internals.
Exit 0 when all holds, 1 with one line per breach otherwise.
"""
import functools
import os
import re
import subprocess
import sys

# Third-party libraries, by the headers that belong to them and the symbols they define.
HEADERS = [
    ("uv", re.compile(r"^uv(\.h$|/)")),
    ("hiredis", re.compile(r"^hiredis/")),
    ("wolfssl", re.compile(r"^wolfssl/")),
    ("llhttp", re.compile(r"^llhttp\.h$")),
    ("yaml", re.compile(r"^(yaml\.h$|cyaml/)")),
    ("criterion", re.compile(r"^criterion/")),
]
SYMBOLS = [
    ("uv", re.compile(r"^uv_")),
    ("hiredis", re.compile(r"^(redis[A-Z]|__redis)")),
    ("wolfssl", re.compile(r"^(wc_|wolfSSL|wolfCrypt|Wc)")),
    ("llhttp", re.compile(r"^llhttp_")),
    ("yaml", re.compile(r"^(yaml_|cyaml_)")),
]
# The internal prefix of each layer's library (README "Layout").
INTERNAL = {"rp_core": "core_", "rp_cmp": "cmp_", "rp_proto": "proto_", "rp_net": "net_",
            "rp_ra": "ra_", "rp_tools": "tool_"}
# Names not ours: third-party code compiled into a layer (llhttp's C sources in proto) and
# what compilers and sanitizers generate (__odr_asan.*, __asan_*, …).
FOREIGN = re.compile(r"^(llhttp_|__)")
INCLUDE = re.compile(r'^\s*#\s*include\s*([<"])([^>"]+)[>"]')
CHECKED_DIRS = ["src", "include/raproxy", "test", "bench"]


def read_manifest(path):
    groups, order, owner = {}, [], {}
    with open(path) as f:
        for line in f:
            parts = line.split()
            if not parts:
                continue
            if parts[0] == "layer":
                name, lib, uses, as_ = parts[1:5]
                groups[name] = {
                    "lib": None if lib == "-" else lib,
                    "uses": None if uses == "*" else set() if uses == "-" else set(uses.split(",")),
                    "as": as_,
                    "files": [],
                }
                if as_ == name:
                    order.append(name)
            elif parts[0] == "file":
                name, path_ = parts[1], os.path.realpath(parts[2])
                groups[name]["files"].append(path_)
                owner.setdefault(path_, []).append(name)
    return groups, order, owner


def rank(groups, order, name):
    return order.index(groups[name]["as"])


def check_membership(src, owner, problems):
    for d in CHECKED_DIRS:
        for root, _, files in os.walk(os.path.join(src, d)):
            for fn in files:
                if not fn.endswith((".c", ".h")):
                    continue
                p = os.path.realpath(os.path.join(root, fn))
                rel = os.path.relpath(p, src)
                n = len(owner.get(p, []))
                if n == 0:
                    problems.append(f"{rel}: in no list (src/CMakeLists.txt, test/, bench/)")
                elif n > 1:
                    problems.append(f"{rel}: in {n} lists: {', '.join(owner[p])}")


def resolve(src, including, quote, name):
    """The file an include names, or None for a system/third-party header."""
    if quote == "<":
        return None
    for base in (os.path.dirname(including), os.path.join(src, "include"),
                 os.path.join(src, "src"), os.path.join(src, "test", "support"),
                 os.path.join(src, "test", "support", "cmp"),
                 os.path.join(src, "test", "support", "net")):
        p = os.path.realpath(os.path.join(base, name))
        if os.path.exists(p):
            return p
    return None


def check_includes(src, groups, order, owner, problems):
    for name, g in groups.items():
        r = rank(groups, order, name)
        is_layer = g["as"] == name
        for path in g["files"]:
            rel = os.path.relpath(path, src)
            with open(path, errors="replace") as f:
                lines = f.readlines()
            for no, line in enumerate(lines, 1):
                m = INCLUDE.match(line)
                if not m:
                    continue
                quote, inc = m.groups()
                target = resolve(src, path, quote, inc)
                if target is None:
                    lib = next((lib for lib, rx in HEADERS if rx.search(inc)), None)
                    if lib and g["uses"] is not None and lib not in g["uses"]:
                        problems.append(f"{rel}:{no}: includes <{inc}> ({lib}), which {name} "
                                        f"may not use")
                    elif quote == '"':
                        problems.append(f"{rel}:{no}: includes \"{inc}\", which is no file")
                    continue
                owners = owner.get(target)
                if not owners:
                    problems.append(f"{rel}:{no}: includes {os.path.relpath(target, src)}, "
                                    f"which is in no list")
                    continue
                tgroup = owners[0]
                if rank(groups, order, tgroup) > r:
                    problems.append(f"{rel}:{no}: {name} includes \"{inc}\" of {tgroup}, a "
                                    f"later layer")
                internal = os.path.relpath(target, src).startswith("src" + os.sep)
                if is_layer and internal and tgroup != name:
                    problems.append(f"{rel}:{no}: {name} includes \"{inc}\", an internal "
                                    f"header of {tgroup}")


@functools.lru_cache(maxsize=None)  # the layer and naming checks read the same libraries
def nm(args, lib):
    out = subprocess.run(["nm", "-P", *args, lib], capture_output=True, text=True,
                         check=True).stdout
    syms = set()
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 2 and not parts[0].endswith(":"):
            syms.add(parts[0])
    return syms


def check_symbols(groups, order, problems):
    defined = {}
    for name, g in groups.items():
        if g["lib"]:
            for s in nm(("-g", "--defined-only"), g["lib"]):
                defined.setdefault(s, name)
    for name, g in groups.items():
        if not g["lib"]:
            continue
        r = rank(groups, order, name)
        breaches = {}  # what is reached -> the symbols that reach it
        for s in sorted(nm(("-u",), g["lib"])):
            d = defined.get(s)
            if d and rank(groups, order, d) > r:
                breaches.setdefault(f"{d}, a later layer", []).append(s)
            lib = next((lib for lib, rx in SYMBOLS if rx.search(s)), None)
            if lib and g["uses"] is not None and lib not in g["uses"]:
                breaches.setdefault(f"{lib}, which {name} may not use", []).append(s)
        for what, syms in breaches.items():
            more = f" and {len(syms) - 3} more" if len(syms) > 3 else ""
            problems.append(f"{name} ({os.path.basename(g['lib'])}) calls into {what}: "
                            f"{', '.join(syms[:3])}{more}")


def public_names(src):
    names = set()
    inc = os.path.join(src, "include", "raproxy")
    for f in os.listdir(inc):
        if f.endswith(".h"):
            with open(os.path.join(inc, f)) as h:
                names.update(re.findall(r"\brp_\w+", h.read()))
    return names


def check_names(groups, src, problems):
    public = public_names(src)
    for name, own in INTERNAL.items():
        lib = groups.get(name, {}).get("lib")
        if not lib:
            continue
        for s in sorted(nm(("-g", "--defined-only"), lib)):
            if FOREIGN.match(s):
                continue
            if s.startswith("rp_") and s not in public:
                problems.append(f"{name}: {s} looks like API but no header of include/raproxy/ "
                                f"declares it: call it {own}... (internal) or declare it")
            elif not s.startswith("rp_") and not s.startswith(own):
                problems.append(f"{name}: {s} is global without rp_ (API) or {own} (internal): "
                                f"rename it, or make it static")
        others = tuple(p for n, p in INTERNAL.items() if n != name)
        for s in sorted(nm(("-u",), lib)):
            if s.startswith(others):
                problems.append(f"{name}: uses {s}, internal to another layer")


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    manifest, src = sys.argv[1], os.path.realpath(sys.argv[2])
    groups, order, owner = read_manifest(manifest)
    problems = []
    check_membership(src, owner, problems)
    check_includes(src, groups, order, owner, problems)
    check_symbols(groups, order, problems)
    check_names(groups, src, problems)
    for p in problems:
        print(p)
    layers = " < ".join(order)
    print(f"layering: {len(problems)} problem(s); layers {layers}; "
          f"{sum(len(g['files']) for g in groups.values())} files")
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
