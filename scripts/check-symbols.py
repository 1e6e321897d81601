#!/usr/bin/env python3
"""raproxy's symbol convention, checked (the ctest test `symbols`).

usage: check-symbols.py BUILD/layers.txt SOURCE_DIR

A name says who may call it:
  - rp_<module>_<verb>: the API of a layer, declared in a header of include/raproxy/; any
    later layer, the tests and the benches may call it;
  - <layer>_<module>_<verb> (core_, cmp_, proto_, net_, ra_, tool_): internal to one layer,
    declared in that layer's private header (src/<layer>/*.h), called by the layer's own
    files and its unit tests only;
  - static: one file.
What must hold, for each layer's library (the manifest of the `layering` test names them):
  - every global symbol it defines starts with rp_ and is declared in include/raproxy/, or
    starts with its own layer's internal prefix;
  - it uses no other layer's internal symbol.
Exit 0 when all holds, 1 with one line per breach otherwise.
"""
import glob
import os
import re
import subprocess
import sys

PREFIX = {"rp_core": "core_", "rp_cmp": "cmp_", "rp_proto": "proto_", "rp_net": "net_",
          "rp_ra": "ra_", "rp_tools": "tool_"}
# Names not ours: third-party code compiled into a layer (llhttp's C sources in proto) and
# what compilers and sanitizers generate (__odr_asan.*, __asan_*, __sancov_*, …).
FOREIGN = re.compile(r"^(llhttp_|__)")


def read_libs(path):
    libs = {}
    with open(path) as f:
        for line in f:
            parts = line.split()
            if parts and parts[0] == "layer" and parts[1] in PREFIX and parts[2] != "-":
                libs[parts[1]] = parts[2]
    return libs


def public_names(src):
    names = set()
    for h in glob.glob(os.path.join(src, "include", "raproxy", "*.h")):
        with open(h) as f:
            names.update(re.findall(r"\brp_\w+", f.read()))
    return names


def nm(args, lib):
    out = subprocess.run(["nm", "-P"] + args + [lib], capture_output=True, text=True,
                         check=True).stdout
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 2 and not parts[0].endswith(":"):
            yield parts[0], parts[1]


def main():
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    libs = read_libs(sys.argv[1])
    public = public_names(sys.argv[2])
    problems = []
    for name, lib in sorted(libs.items()):
        own = PREFIX[name]
        others = [p for n, p in PREFIX.items() if n != name]
        for sym, kind in sorted(set(nm(["-g", "--defined-only"], lib))):
            if kind not in "TDBRCV" or FOREIGN.match(sym):
                continue
            if sym.startswith("rp_"):
                if sym not in public:
                    problems.append(f"{name}: {sym} looks like API but no header of "
                                    f"include/raproxy/ declares it: call it {own}... "
                                    f"(internal) or declare it")
            elif not sym.startswith(own):
                problems.append(f"{name}: {sym} is global without rp_ (API) or {own} "
                                f"(internal): rename it, or make it static")
        for sym, _ in sorted(set(nm(["-u"], lib))):
            for p in others:
                if sym.startswith(p):
                    problems.append(f"{name}: uses {sym}, internal to another layer")
    for p in problems:
        print(p)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
