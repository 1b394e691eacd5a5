"""How much memory a conversion may use, and sizes in words. A volume whose conversion would need
more than that fails on its own (one failed outcome) instead of the allocation killing the run."""

from __future__ import annotations

import os
import re
from pathlib import Path

from kspacify.errors import UsageError

_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def human(size: float) -> str:
    """`size` bytes in words: `512 bytes`, `3.2 MiB`, `8.0 GiB`."""
    if size < 1024:
        return f"{size:.0f} bytes"
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        size /= 1024
        if size < 1024 or unit == "TiB":
            return f"{size:.1f} {unit}"
    return f"{size:.1f} TiB"


def parse_size(text: str) -> int:
    """`4G`, `512M`, `1.5g`, `2GiB`, `100000` (bytes) -> bytes; UsageError otherwise."""
    match = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([kmgt]?)(?:i?b)?\s*", text.lower())
    if not match or float(match[1]) <= 0:
        raise UsageError(f"--max-memory {text!r}: expected a size such as 4G, 512M or 2GiB")
    return int(float(match[1]) * _UNITS[match[2]])


def _number(path: str) -> int | None:
    try:
        text = Path(path).read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def available() -> int | None:
    """Bytes this process can still allocate, as far as the system says: the kernel's estimate of
    available memory, lowered by a cgroup limit (a container, a SLURM job); None when unknown."""
    candidates = []
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    candidates.append(int(line.split()[1]) * 1024)
                    break
    except (OSError, ValueError, IndexError):
        pass
    for limit_file, usage_file in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                                   ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes")):  # fmt: skip
        limit, usage = _number(limit_file), _number(usage_file)
        if limit is not None and usage is not None and limit < 1 << 60:
            candidates.append(max(limit - usage, 0))
    if not candidates:
        try:
            candidates.append(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
        except (ValueError, OSError, AttributeError):
            return None
    return min(candidates)
