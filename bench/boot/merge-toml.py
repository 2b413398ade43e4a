#!/usr/bin/env python3
"""Merges a variant's TOML into beaconbox's config for bench/boot (-v LABEL=FILE).

   merge-toml.py BASE VARIANT > MERGED

Each `key = value` of VARIANT replaces the same key of the same table in BASE, or is
added to that table; a table BASE lacks is appended whole. Line based (BASE's comments
and order stay): VARIANT's values must be one line each. The result is checked with
tomllib, so a variant that breaks the config fails here with TOML's own message.
"""
import re
import sys
import tomllib

HEADER = re.compile(r"^\s*\[([^\[\]]+)\]\s*(#.*)?$")
KEY = re.compile(r"^\s*([A-Za-z0-9_\-\"\.]+)\s*=")


def parse_variant(text, path):
    """[(table, [(key, line)])] in VARIANT's order; "" is the top-level table."""
    tables = [("", [])]
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        header = HEADER.match(line)
        if header:
            tables.append((header.group(1).strip(), []))
            continue
        key = KEY.match(line)
        if not key:
            sys.exit(f"merge-toml.py: {path}:{number}: want `key = value` on one line "
                     f"or a [table] header, got: {stripped}")
        tables[-1][1].append((key.group(1).strip(), line))
    return [(table, keys) for table, keys in tables if keys or table]


def merge(base, variant):
    lines = base.splitlines()
    for table, keys in variant:
        # The span of `table` in BASE: after its header until the next header.
        start = 0 if table == "" else None
        if table:
            for i, line in enumerate(lines):
                header = HEADER.match(line)
                if header and header.group(1).strip() == table:
                    start = i + 1
                    break
        if start is None:
            lines += ["", f"[{table}]"] + [line for _, line in keys]
            continue
        end = next((i for i in range(start, len(lines)) if HEADER.match(lines[i])), len(lines))
        for key, new_line in keys:
            found = next((i for i in range(start, end)
                          if KEY.match(lines[i]) and KEY.match(lines[i]).group(1).strip() == key),
                         None)
            if found is not None:
                lines[found] = new_line
                continue
            # After the table's last non-blank line.
            at = end
            while at > start and not lines[at - 1].strip():
                at -= 1
            lines.insert(at, new_line)
            end += 1
    return "\n".join(lines) + "\n"


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: merge-toml.py BASE VARIANT > MERGED")
    base_path, variant_path = sys.argv[1], sys.argv[2]
    with open(base_path, encoding="utf-8") as f:
        base = f.read()
    with open(variant_path, encoding="utf-8") as f:
        variant = f.read()
    try:
        tomllib.loads(variant)
    except tomllib.TOMLDecodeError as e:
        sys.exit(f"merge-toml.py: {variant_path} is not valid TOML: {e}")
    merged = merge(base, parse_variant(variant, variant_path))
    try:
        tomllib.loads(merged)
    except tomllib.TOMLDecodeError as e:
        sys.exit(f"merge-toml.py: merging {variant_path} into {base_path} gives invalid TOML: {e}")
    sys.stdout.write(merged)


if __name__ == "__main__":
    main()
