"""Launcher that runs one command and reports its wall time and peak memory as JSON.

Usage: ``python benchmarks/_spawn.py result.json argv...``

Why a launcher: on Linux a child's ``ru_maxrss`` starts from the resident size of the process that
forked it (``execve`` keeps the old address space's high-water mark), so a command spawned straight
from the harness, which holds generated data, would report the harness's memory. Spawned from this
small interpreter instead, the floor is this launcher's ~10 MB. It imports nothing heavy, and it times
from spawn to exit, so its own start-up is not counted.
"""

import json
import os
import sys
import time


def main() -> int:
    result_path, *argv = sys.argv[1:]
    start = time.perf_counter()
    pid = os.posix_spawnp(argv[0], argv, os.environ)
    _, status, usage = os.wait4(pid, 0)
    seconds = time.perf_counter() - start
    # Linux reports ru_maxrss in KiB, macOS in bytes
    peak_mb = usage.ru_maxrss / 2**20 if sys.platform == "darwin" else usage.ru_maxrss / 2**10
    result = {
        "seconds": seconds,
        "exit_code": os.waitstatus_to_exitcode(status),
        "peak_mb": peak_mb,
        "cpu_seconds": usage.ru_utime + usage.ru_stime,
    }
    with open(result_path, "w") as f:
        json.dump(result, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
