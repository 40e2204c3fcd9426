"""After the suite: fail if any process of this clone is still running.

"Of this clone" means its executable lies under this clone's .venv (Python
pool workers, multiprocessing resource trackers, Ray's raylet / GCS server)
or its working directory is the clone. Waits up to 15 s for stragglers.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
VENV = str(ROOT / ".venv") + os.sep
sys.path.insert(0, str(ROOT))
from core.procs import wait_until_none  # noqa: E402 — after the clone's root is on the path


def leftovers() -> list[str]:
    me = {os.getpid(), os.getppid()}
    out = []
    for p in psutil.process_iter(["pid", "exe", "cwd", "cmdline", "status"]):
        info = p.info
        if info["pid"] in me or info["status"] == psutil.STATUS_ZOMBIE:
            continue
        exe, cwd = info.get("exe") or "", info.get("cwd") or ""
        if exe.startswith(VENV) or (cwd == str(ROOT) and "python" in os.path.basename(exe)):
            out.append(f"  pid {info['pid']}: {' '.join(info.get('cmdline') or [])[:200]}")
    return out


def main() -> int:
    left = wait_until_none(leftovers, 15, 0.5)
    if left:
        print("processes of this clone still running after the test suite:\n" + "\n".join(left))
        return 1
    print("no process of this clone left running")
    return 0


if __name__ == "__main__":
    sys.exit(main())
