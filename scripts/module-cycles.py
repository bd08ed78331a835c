#!/usr/bin/env python3
"""Import cycles between the top-level modules of each crate, and layers that must not
look up (docs/DESIGN.md).

For every crate under crates/, reads the Rust files of src/, outside their
`#[cfg(test)]` modules, and collects each `crate::MODULE` path a module names (in
`use` lines and inline). It prints every group of top-level modules that import each
other in a ring (a strongly connected component of more than one module).

It then checks the layers in LAYERS: no file of a lower layer names the layer above
it (`crate::http`, `super::http`, `crate::{…, http}` over any number of lines) or the
crates only that layer may use (axum, hyper, tower), comments aside. In
latchkey-server, the service layer (src/service.rs, src/service/) knows nothing of
HTTP. Before anything, it checks itself against every spelling in BREACHES (each
must be found) and ALLOWED (none may be).

Exits 1 when it finds a cycle or a layer breach, 0 otherwise.

Usage: scripts/module-cycles.py [CRATE …]   (default: every crate)
"""

import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
PATH = re.compile(r"\bcrate::([a-z_][a-z0-9_]*)")
GROUP = re.compile(r"\bcrate::\{([^}]*)\}")
TEST_MODULE = re.compile(r"#\[cfg\(test\)\]\s*(pub(\(crate\))?\s+)?mod\s+\w+\s*\{", re.S)


def without_tests(text):
    """The text with every `#[cfg(test)] mod … { … }` block cut out."""
    out = []
    position = 0
    for found in TEST_MODULE.finditer(text):
        if found.start() < position:
            continue
        out.append(text[position : found.start()])
        depth = 0
        index = found.end() - 1
        while index < len(text):
            if text[index] == "{":
                depth += 1
            elif text[index] == "}":
                depth -= 1
                if depth == 0:
                    break
            index += 1
        position = index + 1
    out.append(text[position:])
    return "".join(out)


def top_module(src, path):
    """`api` for src/api.rs and src/api/tokens.rs; None for lib.rs and main.rs."""
    relative = path.relative_to(src)
    first = relative.parts[0]
    name = first[:-3] if first.endswith(".rs") else first
    return None if name in ("lib", "main") else name


def graph(crate):
    src = crate / "src"
    edges = {}
    for path in sorted(src.rglob("*.rs")):
        module = top_module(src, path)
        if module is None:
            continue
        text = without_tests(path.read_text())
        named = set(PATH.findall(text))
        for group in GROUP.findall(text):
            named.update(part.strip().split("::")[0] for part in group.split(","))
        named.discard(module)
        named.discard("")
        edges.setdefault(module, set()).update(named)
    modules = set(edges)
    return {m: {n for n in targets if n in modules} for m, targets in edges.items()}


def cycles(edges):
    """Strongly connected components of more than one node (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []
    counter = [0]

    def visit(node):
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for target in sorted(edges.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(10_000)
    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


# crate -> the lower layer, which must not name the layer above it or its crates.
LAYERS = {"latchkey-server": "service"}
UPPER = "http"
HTTP_CRATES = re.compile(r"\b(axum|hyper|hyper_util|tower|tower_http)\b")
PATH_START = re.compile(r"\b(crate|super)\s*::")


def blank_comments(text):
    """`text` with every comment replaced by spaces, so offsets and lines stay."""
    def blank(match):
        return re.sub(r"[^\n]", " ", match.group(0))
    return re.sub(r"/\*.*?\*/|//[^\n]*", blank, text, flags=re.S)


def path_after(code, position):
    """The path that starts at `position` (after `crate::` or `super::`), with a
    `{…}` group taken whole, however nested and over however many lines."""
    end = position
    depth = 0
    while end < len(code):
        char = code[end]
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth < 0:
                break
            if depth == 0:
                end += 1
                break
        elif depth == 0 and char in ";,) \t\n" and code[position:end].strip():
            if char in " \t\n" and code[end:].lstrip().startswith(("::", "{")):
                end += 1
                continue
            break
        end += 1
    return code[position:end]


def breaches_in(text):
    """Offsets of every place in Rust source `text` (comments aside) that names the
    upper layer (`crate::http`, `super::http`, `crate::{…, http::…}` on any number of
    lines) or an HTTP crate (`axum::…`, `use hyper as h;`)."""
    code = blank_comments(text)
    found = [m.start() for m in HTTP_CRATES.finditer(code)]
    for start in PATH_START.finditer(code):
        path = path_after(code, start.end())
        # `super::super::http`: skip the further `super::`s.
        rest = re.sub(r"^(\s*super\s*::)*", "", path)
        if re.match(r"\s*" + UPPER + r"\b", rest) or (
            rest.lstrip().startswith("{") and re.search(r"(^|[{,\s])" + UPPER + r"\b", rest)
        ):
            found.append(start.start())
    return sorted(found)


def layer_breaches(crate):
    """(file, line number, line) of every place in the lower layer that names what it
    must not."""
    layer = LAYERS.get(crate.name)
    if layer is None:
        return []
    src = crate / "src"
    files = [src / f"{layer}.rs"] + sorted((src / layer).rglob("*.rs"))
    found = []
    for path in files:
        if not path.is_file():
            continue
        text = without_tests(path.read_text())
        lines = text.splitlines()
        for offset in breaches_in(text):
            number = text.count("\n", 0, offset) + 1
            found.append((path.relative_to(ROOT), number, lines[number - 1].strip()))
    return found


# Every spelling of the breach the check must see, and uses it must let pass.
BREACHES = [
    "use crate::http::problem::ApiError;",
    "use crate :: http :: problem;",
    "use crate::{http, service};",
    "use crate::{\n    service::state::AppState,\n    http::auth::Caller,\n};",
    "use crate::{service::{a, b}, http::X};",
    "use super::http::X;",
    "use super::super::http::X;",
    "use super::super::{http};",
    "fn f(_: crate::http::problem::ApiError) {}",
    "use axum::Json;",
    "use ::axum::Json;",
    "use hyper as web;",
    "use tower_http::set_header;",
    "let r = hyper_util::rt::TokioIo::new(s);",
]
ALLOWED = [
    "use crate::service::state::AppState;",
    "use crate::{service::error::Error, service::jwt};",
    "use super::keys::{KeySet, SigningKey};",
    "use http::HeaderValue;",
    "// the HTTP layer (`crate::http`) maps it; axum is not used here",
    "/* use crate::http::X; */",
    "use crate::service::httpish::X;",
]


def self_test():
    """The check against every spelling above; the names of the cases it gets wrong."""
    wrong = [case for case in BREACHES if not breaches_in(case)]
    wrong += [case for case in ALLOWED if breaches_in(case)]
    return wrong


def main(names):
    wrong = self_test()
    if wrong:
        for case in wrong:
            print(f"module-cycles self-test: judged wrongly: {case!r}")
        return 1
    crates = sorted(p for p in (ROOT / "crates").iterdir() if (p / "src").is_dir())
    if names:
        crates = [c for c in crates if c.name in names]
    failed = False
    for crate in crates:
        edges = graph(crate)
        for component in cycles(edges):
            failed = True
            ring = set(component)
            links = [
                f"{m} -> {t}"
                for m in component
                for t in sorted(edges[m])
                if t in ring
            ]
            print(f"{crate.name}: {len(component)} modules import each other: "
                  f"{', '.join(component)}")
            print(f"  {'; '.join(links)}")
        for path, number, line in layer_breaches(crate):
            failed = True
            print(f"{path}:{number}: the {LAYERS[crate.name]} layer names a layer above it: {line}")
    if not failed:
        print(f"no import cycles between top-level modules and no layer breaches "
              f"({len(crates)} crates)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
