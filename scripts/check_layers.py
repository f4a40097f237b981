#!/usr/bin/env python3
"""Check tierlog's module layering: every `crate::` reference in the
library goes to the same top-level module or to one in a lower layer, no
module reaches the crate root for anything but a re-export of a lower
module, and inside `format/` each file imports only from files before it.

Run: python3 scripts/check_layers.py   (exit 1 and a list on violations)

Test modules (`#[cfg(test)]` to the end of a file) are not checked: tests
may use anything. The binary (`src/main.rs`, `src/cli/`) uses the library
through `tierlog::` and is not checked either.
"""
import pathlib
import re
import sys

# Lowest first. A module may import from any module of a lower rank, and
# from its own.
LAYERS = [
    ["error", "sync", "clock", "text", "failpoints"],
    ["security"],
    ["config", "client"],
    ["format", "metrics"],
    ["catalog", "log"],
    ["remote"],
    ["unified_log"],
    ["log_manager"],
    ["tasks"],
    ["engine"],
    ["coordinator"],
    ["broker"],
]
RANK = {m: i for i, layer in enumerate(LAYERS) for m in layer}

# Inside format/: each file only from those before it.
FORMAT_ORDER = ["error", "compression", "batch", "records", "validator", "compact"]

SRC = pathlib.Path(__file__).resolve().parent.parent / "src"


def strip_tests(text):
    i = text.find("#[cfg(test)]")
    return text if i < 0 else text[:i]


def strip_comments(text):
    return "\n".join(l for l in text.splitlines() if not l.lstrip().startswith("//"))


def root_exports():
    """Names re-exported at the crate root -> the module they come from."""
    lib = (SRC / "lib.rs").read_text()
    out = {}
    for m in re.finditer(r"pub(?:\(crate\))?\s+use\s+([a-z_]+)::(.*?);", lib, re.S):
        module, rest = m.group(1), m.group(2)
        for name in re.findall(r"\b([A-Za-z_][A-Za-z0-9_]*)\b", rest):
            out.setdefault(name, module)
    return out


def references(text):
    """Top-level names referenced as `crate::NAME` (grouped imports too)."""
    names = set(re.findall(r"\bcrate::([A-Za-z_][A-Za-z0-9_]*)", text))
    for group in re.findall(r"\bcrate::\{([^}]*)\}", text, re.S):
        for item in group.split(","):
            item = item.strip()
            if item:
                names.add(re.split(r"::|\s", item)[0])
    names.discard("{")
    return names


def main():
    exports = root_exports()
    errors = []
    for path in sorted(SRC.rglob("*.rs")):
        rel = path.relative_to(SRC)
        if rel.parts[0] in ("main.rs", "cli", "lib.rs"):
            continue
        module = rel.parts[0].removesuffix(".rs")
        if module not in RANK:
            errors.append(f"{rel}: module '{module}' has no layer in scripts/check_layers.py")
            continue
        text = strip_comments(strip_tests(path.read_text()))
        for name in sorted(references(text)):
            target = name if name in RANK else exports.get(name)
            if target is None:
                errors.append(f"{rel}: crate::{name} is neither a module nor a root re-export")
                continue
            if target != module and RANK[target] >= RANK[module]:
                errors.append(
                    f"{rel}: {module} (layer {RANK[module]}) uses crate::{name} "
                    f"from {target} (layer {RANK[target]})"
                )
        # `super::` in a top-level mod.rs is the crate root.
        top_level = len(rel.parts) == 1 or (len(rel.parts) == 2 and rel.parts[1] == "mod.rs")
        if top_level and re.search(r"\bsuper::[A-Za-z]", text):
            errors.append(f"{rel}: uses super:: (the crate root) from a top-level module")
        if module == "format" and len(rel.parts) == 2:
            me = rel.parts[1].removesuffix(".rs")
            if me in FORMAT_ORDER:
                used = set(re.findall(r"\b(?:super|crate::format)::([a-z_]+)", text))
                for u in used & set(FORMAT_ORDER):
                    if FORMAT_ORDER.index(u) >= FORMAT_ORDER.index(me) and u != me:
                        errors.append(f"{rel}: format/{me} uses format/{u}, which is above it")
    if errors:
        print("layering violations:")
        for e in errors:
            print("  " + e)
        return 1
    print(f"layering ok: {sum(1 for _ in SRC.rglob('*.rs'))} files, {len(LAYERS)} layers, no upward import")
    return 0


if __name__ == "__main__":
    sys.exit(main())
