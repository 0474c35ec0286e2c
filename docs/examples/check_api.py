"""Checks that docs/api.md lists every public name of mmrag's headers, and nothing else.

A public name is one declared at namespace scope (column 0, as .clang-format lays headers out)
in a header under include/mmrag/ outside detail/, in a namespace other than `detail`: a class,
struct, enum, alias, constant or function. Each row of api.md's tables names entities in its first
cell as code spans (`mmrag::io::read_npy<T>`, `FlatIndex::search`); the last component, without
template arguments, is what is matched. Member functions may be listed too (`Class::member`):
those must exist in the class's header.

  check_api.py ROOT          fail (exit 1) listing names missing from api.md or stale in it
  check_api.py ROOT --list   print the public names found in the headers, by header
"""
import pathlib
import re
import sys

root = pathlib.Path(sys.argv[1])
include = root / "include"
api = root / "docs" / "api.md"

DECL = [
    re.compile(r"^(?:template\s*<.*>\s*)?(?:struct|class)\s+(?:\[\[\w+\]\]\s+)?(\w+)\b(?!;)"),
    re.compile(r"^enum\s+(?:class\s+)?(\w+)"),
    re.compile(r"^(?:template\s*<.*>\s*)?using\s+(\w+)\s*="),
    re.compile(r"^(?:template\s*<.*>\s*)?concept\s+(\w+)\b"),
    re.compile(r"^(?:inline\s+)?constexpr\s+[\w:<>]+\s+(\w+)\s*=|^inline\s+const\s+[\w:<>]+\s+(\w+)\s*="),
    # functions: [[nodiscard]]? inline? constexpr? return-type name(
    re.compile(r"^(?:\[\[\w+(?:\(.*?\))?\]\]\s+)?(?:inline\s+|constexpr\s+|static\s+)*"
               r"(?!return\b|if\b|for\b|while\b|else\b|throw\b|case\b|namespace\b|using\b|template\b)"
               r"(?:const\s+)?[\w:]+(?:<[^()]*>)?(?:\s+const)?[\s\*&]+(?:operator\S+|(\w+))\s*\("),
]
MEMBER = re.compile(r"^\s+(?:\[\[\w+\]\]\s+)?(?:static\s+|inline\s+|constexpr\s+|explicit\s+|virtual\s+)*"
                    r"(?:[\w:]+(?:<[^()]*>)?[\s\*&]+)?(~?\w+)\s*\(")


def public_names(path):
    """(namespace, name) pairs declared at namespace scope outside `detail`."""
    names = set()
    stack = []
    for line in path.read_text().splitlines():
        m = re.match(r"^namespace\s+([\w:]+)\s*\{", line)
        if m:
            stack.extend(m.group(1).split("::"))
            continue
        m = re.match(r"^\}\s*//\s*namespace\s+([\w:]+)", line)
        if m:
            del stack[-len(m.group(1).split("::")):]
            continue
        if not stack or "detail" in stack or "internal" in stack:
            continue
        # a one-line template header: the declaration continues on the next line
        if re.match(r"^template\s*<.*>\s*$", line):
            continue
        for d in DECL:
            m = d.match(line)
            if m:
                name = next((g for g in m.groups() if g), None)
                if name:
                    names.add(("::".join(stack), name))
                break
    return names


def members(path):
    text = path.read_text()
    return {m.group(1) for line in text.splitlines() for m in [MEMBER.match(line)] if m}


headers = sorted(p for p in (include / "mmrag").rglob("*.hpp") if "detail" not in p.parts)
found = {}
for h in headers:
    for ns, name in public_names(h):
        found.setdefault(name, set()).add(str(h.relative_to(include)))

if "--list" in sys.argv:
    by_header = {}
    for name, hs in found.items():
        for h in hs:
            by_header.setdefault(h, []).append(name)
    for h in sorted(by_header):
        print(f"{h}: {', '.join(sorted(by_header[h]))}")
    sys.exit(0)

listed = set()
problems = []
all_members = set()
for h in headers:
    all_members |= members(h)
for i, line in enumerate(api.read_text().splitlines(), 1):
    if not line.startswith("|") or line.startswith("|--") or line.startswith("| --"):
        continue
    first = line.split("|")[1]
    for span in re.findall(r"`([^`]+)`", first):
        base = re.sub(r"<[^<>]*>", "", re.sub(r"<[^<>]*>", "", span))  # drop template arguments
        base = base.split("(")[0].strip()
        parts = [p for p in base.split("::") if p]
        if not parts:
            continue
        name = parts[-1]
        if name in found:
            listed.add(name)
        elif len(parts) >= 2 and parts[-2] in found and name in all_members:
            pass  # Class::member
        elif name in all_members:
            pass
        else:
            problems.append(f"api.md:{i}: `{span}` is not a public name of the headers")
for name in sorted(set(found) - listed):
    problems.append(f"api.md: missing `{name}` ({', '.join(sorted(found[name]))})")
for p in problems:
    print(p)
print(f"{len(found)} public names in {len(headers)} headers, {len(listed)} listed in api.md, "
      f"{len(problems)} problems")
sys.exit(1 if problems else 0)
