"""An experiment: turn ``sched_yield`` into a no-op for this thread and everything it starts.

``engine_overhead.py --quiet-yields`` calls ``install()`` first, so the
benchmark's own thread (the pipeline's consumer), every engine thread and the
hogs inherit it.  It shows what a free-threaded build's lock
spinning costs beside CPU hogs: ``PyMutex`` calls ``sched_yield`` up to 40 times
when it finds a lock taken, and with a busy process in the same scheduling group
each yield can hand it the core until the next tick (docs/free-threading.md, "A
busy machine").  With the yields gone the spin takes microseconds, then the thread
sleeps until the holder wakes it.

A diagnostic, not something ftpipe does: the filter is a seccomp program that
cannot be removed, and without ``CAP_SYS_ADMIN`` the kernel requires
``no_new_privs`` first (programs started afterwards cannot gain privileges).
Linux on x86-64 or ARM64 only.
"""

from __future__ import annotations

import ctypes
import errno
import platform
import struct

__all__ = ["install"]

_PR_SET_NO_NEW_PRIVS = 38
_PR_SET_SECCOMP = 22
_SECCOMP_MODE_FILTER = 2
_RET_ERRNO_0 = 0x0005_0000  # skip the call and return 0
_RET_ALLOW = 0x7FFF_0000
# machine: (sched_yield's number, the AUDIT_ARCH value the kernel reports for its calls)
_ARCHES = {"x86_64": (24, 0xC000_003E), "aarch64": (124, 0xC000_00B7)}


class _Fprog(ctypes.Structure):
    _fields_ = (("len", ctypes.c_ushort), ("filter", ctypes.c_void_p))


def _program() -> bytes:
    number, arch = _ARCHES[platform.machine()]

    def op(code: int, jump_true: int, jump_false: int, k: int) -> bytes:
        return struct.pack("=HBBI", code, jump_true, jump_false, k)

    load, jump_eq, ret = 0x20, 0x15, 0x06  # BPF_LD|W|ABS, BPF_JMP|JEQ|K, BPF_RET|K
    return b"".join(
        (
            op(load, 0, 0, 4),  # seccomp_data.arch
            op(jump_eq, 0, 3, arch),  # another ABI: allow
            op(load, 0, 0, 0),  # seccomp_data.nr
            op(jump_eq, 0, 1, number),
            op(ret, 0, 0, _RET_ERRNO_0),
            op(ret, 0, 0, _RET_ALLOW),
        )
    )


def install() -> None:
    """Install the filter on the calling thread (inherited by what it starts).

    Raises:
        OSError: Not Linux on x86-64 / ARM64, or the kernel refused the filter.
    """
    if platform.system() != "Linux" or platform.machine() not in _ARCHES:
        raise OSError(f"--quiet-yields needs Linux on {' or '.join(_ARCHES)}")
    program = _program()
    code = ctypes.create_string_buffer(program, len(program))
    fprog = _Fprog(len(program) // 8, ctypes.addressof(code))
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    prctl.argtypes = (ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p, ctypes.c_ulong, ctypes.c_ulong)
    if prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, ctypes.byref(fprog), 0, 0) == 0:
        return
    if ctypes.get_errno() == errno.EACCES:  # no CAP_SYS_ADMIN: no_new_privs first
        if prctl(_PR_SET_NO_NEW_PRIVS, 1, None, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS)")
        if prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, ctypes.byref(fprog), 0, 0) == 0:
            return
    raise OSError(ctypes.get_errno(), "prctl(PR_SET_SECCOMP): the kernel refused the filter")
