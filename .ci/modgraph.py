#!/usr/bin/env python3
"""Module dependency check for engine/src (run by `make lint`).

Fails when the top-level modules of engine/src depend on each other in a cycle, or when two
sibling files (neither the other's parent module) import each other. A dependency is a path
written in code (`crate::x`, `super::x`, `self::x`); comments and doc links do not count.
Code under `#[cfg(test)]` in a file's trailing `mod tests` does not count either.
"""
import pathlib
import re
import sys

ROOT = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "engine/src")
SKIP_TOP = {"lib", "main"}


def module_of(path):
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "mod":
        parts = parts[:-1]
    return tuple(parts)


def strip(text):
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    text = re.sub(r"//[^\n]*", "", text)
    text = re.sub(r"'(\\.|[^'\\])'", "' '", text)  # char literals, '"' among them
    text = re.sub(r'\br(#*)".*?"\1', '""', text, flags=re.S)  # raw strings
    text = re.sub(r'"(\\.|[^"\\])*"', '""', text)
    # a trailing unit-test module is the file's own test, not a dependency
    m = re.search(r"#\[cfg\(test\)\]\s*mod\s+tests\s*\{", text)
    if m:
        text = text[: m.start()]
    return text


def expand(prefix, body):
    """`prefix::{a, b::c, d::{e}}` -> [prefix::a, prefix::b::c, prefix::d::e]"""
    out, depth, cur = [], 0, ""
    for ch in body:
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
        if ch == "," and depth == 0:
            out.append(cur)
            cur = ""
        else:
            cur += ch
    out.append(cur)
    paths = []
    for item in out:
        item = item.strip()
        if not item:
            continue
        m = re.match(r"([\w:]*?)::\{(.*)\}$", item, flags=re.S)
        if m:
            paths += expand(prefix + [p for p in m.group(1).split("::") if p], m.group(2))
        else:
            paths.append(prefix + [p for p in re.split(r"::|\s+as\s+", item)[0].split("::") if p])
    return paths


def references(text):
    refs = []
    for m in re.finditer(r"\b(crate|super|self)((?:::\w+)*)::\{", text):
        start = m.end()
        depth, i = 1, start
        while depth and i < len(text):
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        head = [m.group(1)] + [p for p in m.group(2).split("::") if p]
        refs += expand(head, text[start : i - 1])
    for m in re.finditer(r"\b(crate|super|self)((?:::\w+)+)", text):
        refs.append([m.group(1)] + [p for p in m.group(2).split("::") if p])
    return refs


files = {module_of(p): p for p in ROOT.rglob("*.rs")}
modules = set(files)


def resolve(here, is_mod_file, path):
    if path[0] == "crate":
        base, rest = (), path[1:]
    else:
        base, rest = here, path[1:]
        if path[0] == "super":
            base = base[:-1]
        while rest and rest[0] == "super":
            base, rest = base[:-1], rest[1:]
    full = base + tuple(rest)
    for n in range(len(full), 0, -1):
        if full[:n] in modules:
            return full[:n]
    return None


# files declared under `#[cfg(test)]` (`#[cfg(test)] mod tests;`) are tests, not dependencies
test_only = set()
for mod, path in files.items():
    for m in re.finditer(r"#\[cfg\(test\)\]\s*(?:pub(?:\([\w:]+\))?\s+)?mod\s+(\w+)\s*;", path.read_text()):
        test_only.add(mod + (m.group(1),))

edges = {}
for mod, path in files.items():
    if any(mod[:n] in test_only for n in range(1, len(mod) + 1)):
        continue
    text = strip(path.read_text())
    for ref in references(text):
        target = resolve(mod, path.name == "mod.rs", ref)
        if target and target != mod:
            edges.setdefault(mod, set()).add(target)

failures = []

# 1. top-level modules
top = {}
for src, targets in edges.items():
    for t in targets:
        a, b = src[0], t[0]
        if a != b and a not in SKIP_TOP and b not in SKIP_TOP:
            top.setdefault(a, set()).add(b)


def cycles(graph):
    index, low, stack, on, out, n = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = n[0]
        n[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


for comp in cycles(top):
    inner = sorted(f"{a} -> {b}" for a in comp for b in top.get(a, ()) if b in comp)
    failures.append(f"top-level modules in a cycle: {', '.join(comp)} ({'; '.join(inner)})")

# 2. sibling files importing each other
seen = set()
for a, targets in edges.items():
    for b in targets:
        if a in edges.get(b, ()) and (b, a) not in seen:
            related = a[: len(b)] == b or b[: len(a)] == a
            if not related:
                seen.add((a, b))
                failures.append(f"files import each other: {files[a].relative_to(ROOT)} <-> {files[b].relative_to(ROOT)}")

if "--graph" in sys.argv:
    for a in sorted(top):
        print(a, "->", ", ".join(sorted(top[a])))
for f in failures:
    print(f, file=sys.stderr)
sys.exit(1 if failures else 0)
