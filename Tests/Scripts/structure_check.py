#!/usr/bin/env python3
"""Checks the shape of the code base (`make test` runs it; `Docs/ARCHITECTURE.md` explains it):

1. the module graph: every target's `import` lines and its `Package.swift` dependencies name
   exactly the project modules that the `modules` block of Docs/ARCHITECTURE.md lists for it;
2. architecture knowledge: outside Sources/MalArchitectures no file names an architecture (its
   model_type, its type) or compares a model's type;
3. sizes: no Swift file over 400 lines, no function over 60 lines and no line over 160 columns,
   unless a comment says why ("long because ..." in the file's or function's leading comment).
Exit status 1 with one line per finding.
"""
import os, re, sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TARGETS = {d: os.path.join("Sources", d) for d in os.listdir(os.path.join(ROOT, "Sources"))}
TARGETS["malbench"] = "Benchmarks/MalBench"
PROJECT = set(TARGETS)
IMPORT = re.compile(r"^\s*(?:@testable\s+)?import\s+(\w+)", re.M)
MAX_FILE, MAX_FUNC, MAX_LINE = 400, 60, 160
REASON = re.compile(r"long because", re.I)
findings = []


def swift_files(folder):
    for base, _, files in os.walk(os.path.join(ROOT, folder)):
        for f in sorted(files):
            if f.endswith(".swift"):
                yield os.path.join(base, f)


def rel(p):
    return os.path.relpath(p, ROOT)


def documented_graph():
    doc = open(os.path.join(ROOT, "Docs/ARCHITECTURE.md"), encoding="utf-8").read()
    m = re.search(r"```modules\n(.*?)```", doc, re.S)
    if not m:
        sys.exit("Docs/ARCHITECTURE.md has no ```modules block")
    graph = {}
    for line in m.group(1).splitlines():
        if line.strip():
            name, _, deps = line.partition(":")
            graph[name.strip()] = set(deps.split())
    return graph


def package_dependencies():
    """Each target's project-module dependencies as `Package.swift` declares them."""
    text = open(os.path.join(ROOT, "Package.swift"), encoding="utf-8").read()
    deps = {}
    for m in re.finditer(r'\.(?:target|executableTarget)\(name: "(\w+)", dependencies: \[', text):
        depth, i = 1, m.end()
        while depth and i < len(text):
            depth += {"[": 1, "]": -1}.get(text[i], 0)
            i += 1
        deps[m.group(1)] = {d for d in re.findall(r'"(\w+)"', text[m.end():i]) if d in PROJECT}
    return deps


def check_imports():
    graph = documented_graph()
    declared = package_dependencies()
    for target, folder in sorted(TARGETS.items()):
        if not any(True for _ in swift_files(folder)):
            continue                                     # C and system-library targets
        found = set()
        for p in swift_files(folder):
            found |= {m for m in IMPORT.findall(open(p, encoding="utf-8").read()) if m in PROJECT}
        if target not in graph:
            findings.append(f"Docs/ARCHITECTURE.md: module {target} is missing from the modules block")
            continue
        for extra in sorted(found - graph[target]):
            findings.append(f"{folder}: imports {extra}, which the module graph does not allow")
        for unused in sorted(graph[target] - found):
            findings.append(f"Docs/ARCHITECTURE.md: {target} is drawn importing {unused}, but no file does")
        if target in declared and declared[target] != graph[target]:
            findings.append(f"Package.swift: {target} depends on {' '.join(sorted(declared[target]))}; "
                            f"the module graph says {' '.join(sorted(graph[target]))}")


ARCH_PATTERNS = [
    (re.compile(r'"(gpt2|llama|deepseek_v2|deepseek_v3|qwen2)"'), "names a model_type"),
    (re.compile(r"\b(GPT2|Llama|DeepSeek|Qwen2)Architecture\b"), "names an architecture type"),
    (re.compile(r"\b(modelType|architecture)\s*[!=]="), "compares a model's type"),
    (re.compile(r"[!=]=\s*\w*\.?(modelType|architecture)\b"), "compares a model's type"),
    (re.compile(r"\bisDeepSeek\b|hasPrefix\(\"deepseek"), "asks for an architecture"),
]


def check_architecture_names():
    for folder in ["Sources", "Benchmarks"]:
        for p in swift_files(folder):
            if rel(p).startswith("Sources/MalArchitectures/"):
                continue
            for n, line in enumerate(open(p, encoding="utf-8"), 1):
                code = line.split("//")[0]
                for pat, what in ARCH_PATTERNS:
                    if pat.search(code):
                        findings.append(f"{rel(p)}:{n}: {what} outside Sources/MalArchitectures: {line.strip()}")


FUNC = re.compile(r"^\s*(?:@\w+(?:\([^)]*\))?\s+)*(?:(?:public|private|fileprivate|internal|static|override|mutating|final|"
                  r"nonisolated|class|convenience|required)\s+)*(?:func\s|init[?!]?\s*[(<]|deinit\b|subscript\s*[(<])")


def code_of(line):
    line = re.sub(r'"(?:\\.|[^"\\])*"', '""', line)
    return line.split("//")[0]


def leading_comment(lines, i):
    """The comment lines right above line i (doc comments, attributes skipped)."""
    out = []
    j = i - 1
    while j >= 0 and (lines[j].strip().startswith("//") or lines[j].strip().startswith("@")):
        out.append(lines[j])
        j -= 1
    return "\n".join(out)


def check_sizes():
    for folder in ["Sources", "Benchmarks/MalBench"]:
        for p in swift_files(folder):
            lines = open(p, encoding="utf-8").read().split("\n")
            head = "\n".join(l for l in lines[:30] if l.strip().startswith("//"))
            if len(lines) - 1 > MAX_FILE and not REASON.search(head):
                findings.append(f"{rel(p)}: {len(lines) - 1} lines (more than {MAX_FILE}, and no comment says why)")
            for n, line in enumerate(lines, 1):
                if len(line) > MAX_LINE:
                    findings.append(f"{rel(p)}:{n}: {len(line)} columns (more than {MAX_LINE})")
            i = 0
            while i < len(lines):
                if FUNC.match(lines[i]):
                    depth, opened, j = 0, False, i
                    while j < len(lines):
                        c = code_of(lines[j])
                        depth += c.count("{") - c.count("}")
                        opened = opened or "{" in c
                        if (opened and depth <= 0) or (not opened and j > i and not c.strip()):
                            break
                        j += 1
                    size = j - i + 1
                    if opened and size > MAX_FUNC and not REASON.search(leading_comment(lines, i)):
                        findings.append(f"{rel(p)}:{i + 1}: function of {size} lines (more than {MAX_FUNC}, and no comment says why): "
                                        f"{lines[i].strip()[:70]}")
                i += 1


check_imports()
check_architecture_names()
check_sizes()
for f in findings:
    print(f)
print(f"structure check: {len(findings)} findings" if findings else "structure check: ok (module graph, architecture names, sizes)")
sys.exit(1 if findings else 0)
