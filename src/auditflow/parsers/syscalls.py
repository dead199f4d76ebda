"""System call names by number, for audit records written without `log_format = ENRICHED` (and for
the journal's audit records, which never have it): the calls that audit rules commonly watch, on
x86_64 and aarch64. Unknown numbers and other architectures keep no name. Also the socket address
of a SOCKADDR record."""

from __future__ import annotations

import ipaddress

# The `arch=` values audit writes (AUDIT_ARCH_X86_64, AUDIT_ARCH_AARCH64).
_X86_64 = "c000003e"
_AARCH64 = "c00000b7"

_BY_ARCH: dict[str, dict[int, str]] = {
    _X86_64: {
        2: "open", 21: "access", 41: "socket", 42: "connect", 43: "accept", 49: "bind", 50: "listen",
        56: "clone", 57: "fork", 58: "vfork", 59: "execve", 62: "kill", 63: "uname", 76: "truncate",
        77: "ftruncate", 82: "rename", 83: "mkdir", 84: "rmdir", 85: "creat", 86: "link", 87: "unlink",
        88: "symlink", 90: "chmod", 91: "fchmod", 92: "chown", 93: "fchown", 94: "lchown", 99: "sysinfo",
        101: "ptrace", 103: "syslog", 105: "setuid", 106: "setgid", 113: "setreuid", 117: "setresuid",
        133: "mknod", 135: "personality", 165: "mount", 166: "umount2", 175: "init_module",
        176: "delete_module", 257: "openat", 258: "mkdirat", 259: "mknodat", 260: "fchownat",
        263: "unlinkat", 264: "renameat", 265: "linkat", 266: "symlinkat", 268: "fchmodat", 288: "accept4",
        313: "finit_module", 316: "renameat2", 319: "memfd_create", 321: "bpf", 322: "execveat",
    },
    _AARCH64: {
        33: "mknodat", 34: "mkdirat", 35: "unlinkat", 36: "symlinkat", 37: "linkat", 38: "renameat",
        39: "umount2", 40: "mount", 45: "truncate", 46: "ftruncate", 52: "fchmod", 53: "fchmodat",
        54: "fchownat", 55: "fchown", 56: "openat", 92: "personality", 105: "init_module",
        106: "delete_module", 116: "syslog", 117: "ptrace", 129: "kill", 144: "setgid", 145: "setreuid",
        146: "setuid", 147: "setresuid", 160: "uname", 179: "sysinfo", 198: "socket", 200: "bind",
        201: "listen", 202: "accept", 203: "connect", 220: "clone", 221: "execve", 242: "accept4",
        273: "finit_module", 276: "renameat2", 279: "memfd_create", 280: "bpf", 281: "execveat",
    },
}  # fmt: skip


def syscall_name(arch: str | None, number: str | None) -> str | None:
    """`openat` for arch `c000003e` and syscall `257`; None when the pair is not in the table."""
    table = _BY_ARCH.get(arch or "")
    if table is None or number is None or not number.isdigit() or len(number) > 4:
        return None
    return table.get(int(number))


_AF_INET = 2
_AF_INET6 = 10


def inet_peer(saddr: str | None) -> tuple[str, int] | None:
    """The address and port of a SOCKADDR record's `saddr` (hex of a struct sockaddr) when it is an
    IPv4 or IPv6 socket address; None for other families (unix sockets, netlink) and bad input."""
    if saddr is None or len(saddr) % 2 or len(saddr) > 256:
        return None
    try:
        raw = bytes.fromhex(saddr)
    except ValueError:
        return None
    if len(raw) < 8:
        return None
    family = int.from_bytes(raw[:2], "little")
    port = int.from_bytes(raw[2:4], "big")
    if family == _AF_INET:
        return str(ipaddress.IPv4Address(raw[4:8])), port
    if family == _AF_INET6 and len(raw) >= 24:
        return ipaddress.IPv6Address(raw[8:24]).compressed, port
    return None
