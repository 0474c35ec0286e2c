"""Checks that every ```cpp block in docs/*.md is a [snippet] region of a docs/examples program.

A block is preceded by a line `<!-- snippet: examples/FILE.cpp#NAME -->`; the block's text must
equal the region between `// [snippet:NAME]` and `// [/snippet]` in that file (indentation
removed). `<!-- snippet: examples/FILE.cpp -->` (no #NAME) shows the whole program, minus the
snippet marker lines. So the code in the docs is code that `meson test` compiles and runs.
`// clang-format off` / `on` lines inside a region are left out of the docs.
`check_snippets.py DOCS_DIR --fix` rewrites stale blocks from the programs.
"""
import pathlib
import re
import sys
import textwrap

docs = pathlib.Path(sys.argv[1])
fix = "--fix" in sys.argv  # rewrite stale blocks from their snippets instead of failing
failures = []
blocks = 0
for md in sorted(docs.glob("*.md")):
    lines = md.read_text().splitlines()
    for i, line in enumerate(lines):
        if line.strip() != "```cpp":
            continue
        blocks += 1
        end = next(j for j in range(i + 1, len(lines)) if lines[j].strip() == "```")
        body = "\n".join(lines[i + 1:end]).strip("\n")
        marker = re.match(r"<!-- snippet: ([^\s#]+)(?:#(\S+))? -->", lines[i - 1].strip()) if i > 0 else None
        if not marker:
            failures.append(f"{md.name}:{i + 1}: cpp block without a <!-- snippet: file#name --> marker")
            continue
        src = docs / marker.group(1)
        if not src.exists():
            failures.append(f"{md.name}:{i + 1}: {src} does not exist")
            continue
        text = src.read_text()
        if marker.group(2) is None:  # the whole program
            region = "".join(l for l in text.splitlines(True)
                             if not re.match(r"^[ \t]*// \[/?snippet(:\S+)?\]$", l.rstrip("\n"))
                             and l.strip() not in ("// clang-format off", "// clang-format on"))
        else:
            m = re.search(r"^[ \t]*// \[snippet:" + re.escape(marker.group(2)) + r"\]\n(.*?)^[ \t]*// \[/snippet\]", text, re.S | re.M)
            if not m:
                failures.append(f"{md.name}:{i + 1}: no snippet '{marker.group(2)}' in {src.name}")
                continue
            region = "".join(l for l in m.group(1).splitlines(True) if l.strip() not in ("// clang-format off", "// clang-format on"))
        expect = textwrap.dedent(region).strip("\n")
        if expect != body:
            if fix:
                lines[i + 1:end] = expect.split("\n")
                md.write_text("\n".join(lines) + "\n")
                print(f"{md.name}:{i + 1}: updated from {src.name}#{marker.group(2) or '(whole file)'}")
            else:
                failures.append(f"{md.name}:{i + 1}: block differs from {src.name}#{marker.group(2) or '(whole file)'}")
for f in failures:
    print(f)
print(f"{blocks} code blocks checked, {len(failures)} stale")
sys.exit(1 if failures else 0)
