"""Reusing freed memory in CPU training processes (grefel_hf/training/cpu_memory.py)."""

import json
import subprocess
import sys

import pytest

from grefel_hf.training import cpu_memory

# Runs in a fresh process: where does a 64 MiB tensor live (glibc's mallinfo2: mmapped bytes, heap bytes), before and
# after reuse_freed_memory()?
_PROBE = """
import ctypes, json, torch
from grefel_hf.training.cpu_memory import reuse_freed_memory

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                 "keepcost")]

libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = MallInfo2

def placement():
    before = libc.mallinfo2()
    tensor = torch.empty(16 * 2**20)  # 64 MiB of float32
    during = libc.mallinfo2()
    del tensor
    after = libc.mallinfo2()
    return {"mmapped": during.hblkhd - before.hblkhd, "heap": during.uordblks - before.uordblks,
            "free_in_heap_after": after.fordblks}

default = placement()
applied = reuse_freed_memory()
print(json.dumps({"default": default, "applied": applied, "reused": placement(), "again": reuse_freed_memory()}))
"""


def _glibc() -> bool:
    import platform

    return platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"


@pytest.mark.skipif(not _glibc(), reason="the setting is glibc's; elsewhere reuse_freed_memory changes nothing")
def test_large_blocks_move_from_mmap_to_a_reused_heap():
    result = json.loads(subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True,
                                       check=True).stdout)
    size = 64 * 2**20
    assert result["default"]["mmapped"] >= size and result["default"]["heap"] < size  # glibc's default: mmap
    assert result["applied"] is True and result["again"] is True
    assert result["reused"]["mmapped"] == 0 and result["reused"]["heap"] >= size
    assert result["reused"]["free_in_heap_after"] >= size  # freed, but kept in the heap for the next step


def test_other_c_libraries_are_left_alone(monkeypatch):
    monkeypatch.setattr(cpu_memory, "_applied", False)
    monkeypatch.setattr(cpu_memory.platform, "libc_ver", lambda: ("", ""))
    assert cpu_memory.reuse_freed_memory() is False
    assert cpu_memory._applied is False
