"""Fail unless every host in an ansible-playbook PLAY RECAP reports changed=0 and failed=0."""

from __future__ import annotations

import re
import sys
from pathlib import Path

RECAP = re.compile(r"^(\S+)\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.MULTILINE)


def main(path: str) -> int:
    rows = RECAP.findall(Path(path).read_text())
    if not rows:
        print(f"{path}: no PLAY RECAP found")
        return 1
    bad = [(h, c, u, f) for h, _ok, c, u, f in rows if (c, u, f) != ("0", "0", "0")]
    for host, changed, unreachable, failed in bad:
        print(f"idempotence: {host} changed={changed} unreachable={unreachable} failed={failed}")
    print(f"idempotence: {len(rows)} host(s), {len(bad)} not idempotent")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
