"""One line of the Linux audit log as a record: header (node, type, time, serial) and its fields,
with quoted, hex-encoded and `(null)` values decoded, the nested `msg='...'` of user-space records
flattened, and the upper-case names that `log_format=ENRICHED` appends after a 0x1D byte kept."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from auditflow.model.limits import timestamp_problem
from auditflow.parsers.base import Unparsed

_HEADER = re.compile(
    r"(?:node=(?P<node>\S+) )?type=(?P<type>[A-Za-z0-9_]+) "
    r"msg=audit\((?P<sec>\d{1,12})\.(?P<ms>\d{1,6}):(?P<serial>\d{1,20})\):\s?",
    re.ASCII,
)
_TOKEN = re.compile(r"""([^\s=]+)=("[^"]*"|'[^']*'|\S*)|(\S+)""")
_HEX = re.compile(r"(?:[0-9A-F]{2})+")
_EXECVE_ARG = re.compile(r"a(\d+)(?:\[(\d+)\])?")

# Fields the kernel and libaudit write hex-encoded (unquoted) when the value holds a space, a quote
# or a control character; quoted otherwise. Other unquoted fields are plain words.
_ENCODED = frozenset(
    {
        "acct", "cmd", "comm", "cwd", "exe", "name", "proctitle", "key", "path", "data", "grp",
        "new-acct", "old-acct", "new-user", "old-user", "new-group", "old-group", "unit", "vm",
    }
)  # fmt: skip
ENRICHED_SEPARATOR = "\x1d"


@dataclass(frozen=True, slots=True)
class AuditRecord:
    node: str | None
    type: str
    timestamp: datetime
    serial: int
    stamp: str
    fields: dict[str, str]
    args: tuple[str, ...]
    raw: str
    # written by a user-space program (the record stands alone: no EOE follows)
    user_space: bool


def decode_hex(value: str) -> str:
    text = bytes.fromhex(value).decode("utf-8", "replace")
    # proctitle keeps argv's NUL separators (read as spaces, as `ps` shows them); a key field joins
    # several keys with 0x01; stored text may hold neither
    return text.replace("\x00", " ").replace("\x01", ",").rstrip(" ")


def _value(name: str, value: str) -> str | None:
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        return value[1:-1]
    if value == "(null)":
        return None
    if name in _ENCODED and _HEX.fullmatch(value):
        return decode_hex(value)
    return value


def _tokens(text: str, fields: dict[str, str], args: dict[tuple[int, int], str], *, execve: bool) -> None:
    last: str | None = None
    for name, raw_value, word in _TOKEN.findall(text):
        if word:
            # old shadow-utils write "op=adding user id=1001": a bare word continues the value
            if last is not None and last in fields:
                fields[last] = f"{fields[last]} {word}"
            continue
        if name == "msg" and raw_value[:1] == "'":
            _tokens(raw_value.strip("'"), fields, args, execve=False)
            last = None
            continue
        if execve and (arg := _EXECVE_ARG.fullmatch(name)) is not None:
            args[(int(arg.group(1)), int(arg.group(2) or 0))] = raw_value
            continue
        value = _value(name, raw_value)
        if value is not None:
            fields[name] = value
        last = name


def _execve_args(parts: dict[tuple[int, int], str]) -> tuple[str, ...]:
    joined: dict[int, str] = {}
    for (index, _piece), raw_value in sorted(parts.items()):
        joined[index] = joined.get(index, "") + raw_value
    result = []
    for raw_value in joined.values():
        if raw_value.startswith('"'):
            result.append(raw_value.replace('"', ""))
        elif _HEX.fullmatch(raw_value):
            result.append(decode_hex(raw_value))
        else:
            result.append(raw_value)
    return tuple(result)


def parse_record(line: str) -> AuditRecord | Unparsed:
    header = _HEADER.match(line)
    if header is None:
        return Unparsed("auditd-no-header")
    try:
        timestamp = datetime.fromtimestamp(int(header["sec"]), UTC) + timedelta(milliseconds=int(header["ms"][:3]))
    except (OverflowError, OSError, ValueError):
        return Unparsed("auditd-bad-timestamp")
    if timestamp_problem(timestamp) is not None:
        return Unparsed("auditd-bad-timestamp")
    body, _, enriched = line[header.end() :].partition(ENRICHED_SEPARATOR)
    fields: dict[str, str] = {}
    parts: dict[tuple[int, int], str] = {}
    record_type = header["type"]
    _tokens(body, fields, parts, execve=record_type == "EXECVE")
    if enriched:
        _tokens(enriched, fields, parts, execve=False)
    return AuditRecord(
        node=header["node"],
        type=record_type,
        timestamp=timestamp,
        serial=int(header["serial"]),
        stamp=f"{header['sec']}.{header['ms']}:{header['serial']}",
        fields=fields,
        args=_execve_args(parts),
        raw=line,
        user_space="msg='" in body,
    )
