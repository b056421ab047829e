"""Peak resident memory of a command's process tree, split into anonymous and file-backed.

    python bench/peak_memory.py COMMAND [ARGS...]

Samples /proc/<pid>/status (VmRSS, RssAnon, RssFile) of the process and its children every
50 ms and prints the largest sums. File-backed pages (memory-mapped files) can be dropped by
the kernel under pressure; anonymous memory cannot.
"""

from __future__ import annotations

import subprocess
import sys
import time

import psutil

FIELDS = ("VmRSS", "RssAnon", "RssFile")


def sample(pid: int) -> dict[str, int]:
    """kB per field, summed over the process and its children."""
    total = dict.fromkeys(FIELDS, 0)
    procs = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    for proc in procs:
        with open(f"/proc/{proc.pid}/status") as f:
            for line in f:
                key = line.split(":")[0]
                if key in total:
                    total[key] += int(line.split()[1])
    return total


def watch(child: subprocess.Popen) -> dict[str, int]:
    """The largest kB sums per field over `child`'s process tree, sampled every 50 ms until
    it exits."""
    peak = dict.fromkeys(FIELDS, 0)
    while child.poll() is None:
        try:
            now = sample(child.pid)
        except (psutil.Error, OSError):  # a process ended between listing and reading
            now = {}
        for key, value in now.items():
            peak[key] = max(peak[key], value)
        time.sleep(0.05)
    return peak


def main() -> int:
    child = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    peak = watch(child)
    print(
        ", ".join(f"{k} {v / 1024:.0f} MB" for k, v in peak.items()), f"(exit {child.returncode})"
    )
    return child.returncode


if __name__ == "__main__":
    sys.exit(main())
