"""Parser for the Linux audit log (`/var/log/audit/audit.log`, `ausearch --raw`, remote logging's
`node=` prefix, the `log_format=ENRICHED` form): records sharing a serial number are assembled into
one audit event, which becomes logins, sudo commands, account changes, program starts and writes to
watched files."""

from __future__ import annotations

import posixpath
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from auditflow.model.event import Event
from auditflow.parsers.auditd_record import AuditRecord, parse_record
from auditflow.parsers.base import SourceContext, Unparsed
from auditflow.parsers.emit import clean_text
from auditflow.parsers.eventbuild import make_event
from auditflow.parsers.syscalls import inet_peer, syscall_name

# An unset login uid (never logged in: daemons, boot) is (u32)-1.
_UNSET_IDS = frozenset({"4294967295", "-1", "unset"})
_USER_SPACE_TYPES = {
    "USER_AUTH": "user_auth",
    "USER_LOGIN": "user_login",
    "USER_CMD": "sudo_command",
    "ADD_USER": "user_created",
    "DEL_USER": "user_deleted",
}
_ACCOUNT_TRIED = frozenset({"user_auth", "user_login"})
# systemd's unit start and stop, as user-space records: the vocabulary of the systemd parser
_SERVICE_STATES = {"SERVICE_START": "started", "SERVICE_STOP": "stopped"}
# Record fields kept in `details.audit` under their own names (ids as numbers in text)
_RECORD_FIELDS = (
    "auid", "uid", "euid", "suid", "fsuid", "gid", "egid", "sgid", "fsgid", "ses", "exe", "comm", "key",
    "op", "terminal", "tty", "syscall", "arch", "exit", "unit", "res",
)  # fmt: skip
# The first system call arguments (hex, as the kernel writes them) and the EXECVE arguments kept
# one by one (a0 ... a99), which is what Sigma's auditd rules test.
_SYSCALL_ARGS = ("a0", "a1", "a2", "a3")
MAX_EXECVE_FIELDS = 100


@dataclass(slots=True)
class _Pending:
    records: list[AuditRecord]
    key: str | None


def _known(value: str | None) -> str | None:
    return None if value is None or value in {"?", ""} else value


def _outcome(fields: dict[str, str]) -> bool | None:
    value = fields.get("res", fields.get("success"))
    if value in {"success", "yes", "1"}:
        return True
    if value in {"failed", "no", "0"}:
        return False
    return None


def _name(fields: dict[str, str], numeric: str, enriched: str) -> str | None:
    """The account behind a uid field: its name when the record gives it (ENRICHED), else the number."""
    name = fields.get(enriched)
    if name is not None and name not in _UNSET_IDS:
        return name
    value = fields.get(numeric)
    return None if value is None or value in _UNSET_IDS else value


def _user_id(event_type: str, fields: dict[str, str]) -> str | None:
    if event_type in _ACCOUNT_TRIED:
        return _known(fields.get("acct")) or _name(fields, "id", "ID") or _name(fields, "auid", "AUID")
    return _name(fields, "auid", "AUID") or _name(fields, "uid", "UID")


def _action(primary: AuditRecord) -> str:
    fields = primary.fields
    named = fields.get("SYSCALL")
    if named is None and primary.type == "SYSCALL":
        named = syscall_name(fields.get("arch"), fields.get("syscall"))
    return (named or primary.type).lower()


def _saddr(by_type: dict[str, AuditRecord]) -> str | None:
    return by_type["SOCKADDR"].fields.get("saddr") if "SOCKADDR" in by_type else None


def _int(value: str | None) -> int | None:
    # isdigit() alone accepts superscripts and other digits int() refuses
    return int(value) if value is not None and value.isascii() and value.isdigit() and len(value) < 19 else None


def _watched_paths(records: list[AuditRecord], cwd: str | None) -> list[tuple[str, str | None]]:
    paths = [r.fields for r in records if r.type == "PATH" and r.fields.get("name")]
    # the file itself, not its directory; a name removed by the same call (the temporary file a
    # rename moved into place, the file a rename replaced) only when nothing else was touched
    objects = [p for p in paths if p.get("nametype") != "PARENT"]
    chosen = [p for p in objects if p.get("nametype") != "DELETE"] or objects or paths
    result: dict[str, str | None] = {}
    for path in chosen:
        name = path["name"]
        if not name.startswith("/") and cwd:
            name = posixpath.normpath(posixpath.join(cwd, name))
        result.setdefault(name, path.get("nametype"))
    return list(result.items())


class AuditdParser:
    """Assembles records by (node, time:serial). A user-space record stands alone and is emitted at
    once; kernel records are held until the event's EOE record, or, in input without EOE records
    (`ausearch --raw`), until a record of another serial arrives. At most `max_open` events are held;
    beyond that the oldest is emitted as it is."""

    name: ClassVar[str] = "auditd"

    def __init__(self, context: SourceContext | None = None, *, max_open: int = 64) -> None:
        self.context = context or SourceContext()
        self.max_open = max_open
        self.ignored: dict[str, int] = {}
        self._open: OrderedDict[tuple[str | None, str], _Pending] = OrderedDict()
        self._eoe_seen = False

    def feed(self, line: str, key: str | None = None) -> Sequence[Event] | Unparsed:
        line = clean_text(line).rstrip("\r\n")
        if not line.strip() or line.startswith("----"):
            return []  # blank lines and ausearch's event separators
        record = parse_record(line)
        if isinstance(record, Unparsed):
            return record
        return self.add(record, key)

    def add(self, record: AuditRecord, key: str | None = None) -> list[Event]:
        """Take one parsed record (journald hands over the records it carries this way)."""
        out: list[Event] = []
        ident = (record.node, record.stamp)
        if record.type == "EOE":
            self._eoe_seen = True
            done = self._open.pop(ident, None)
            if done is not None:
                self._emit(done, out)
            return out
        pending = self._open.get(ident)
        if pending is not None:
            pending.records.append(record)
            return out
        if not self._eoe_seen:
            self._emit_all(out)
        if record.user_space:
            self._emit(_Pending([record], key), out)
            return out
        self._open[ident] = _Pending([record], key)
        while len(self._open) > self.max_open:
            self._emit(self._open.popitem(last=False)[1], out)
        return out

    def flush(self) -> Sequence[Event]:
        out: list[Event] = []
        self._emit_all(out)
        return out

    def pending_key(self) -> str | None:
        # Events are held in arrival order, so the first one holds the oldest line.
        for pending in self._open.values():
            return pending.key
        return None

    def _emit_all(self, out: list[Event]) -> None:
        while self._open:
            self._emit(self._open.popitem(last=False)[1], out)

    def _emit(self, pending: _Pending, out: list[Event]) -> None:
        records = pending.records
        by_type = {r.type: r for r in reversed(records)}
        primary = by_type.get("SYSCALL", records[0])
        fields = primary.fields
        events: list[tuple[str, tuple[str, str | None] | None]]
        cwd = by_type["CWD"].fields.get("cwd") if "CWD" in by_type else None
        if "EXECVE" in by_type:
            events = [("process_started", None)]
        elif "SYSCALL" in by_type:
            paths = _watched_paths(records, cwd)
            if _known(fields.get("key")) and paths:
                events = [("file_modified", path) for path in paths]
            elif _action(primary) == "connect" and inet_peer(_saddr(by_type)) is not None:
                events = [("network_connection", None)]
            else:
                # any other system call an audit rule logged (module loads, sockets, mknod, ...)
                events = [("audit_syscall", None)]
        elif primary.type in _USER_SPACE_TYPES and "home" not in fields.get("op", ""):
            # useradd and userdel also log their home directory as ADD_USER/DEL_USER: not a second account
            events = [(_USER_SPACE_TYPES[primary.type], None)]
        elif primary.type in _SERVICE_STATES and _known(fields.get("unit")):
            events = [("service_state_change", None)]
        else:
            events = []
        if not events:
            self.ignored[primary.type] = self.ignored.get(primary.type, 0) + 1
            return
        for index, (event_type, path) in enumerate(events):
            out.append(self._event(event_type, path, pending, by_type, primary, index))

    def _event(
        self,
        event_type: str,
        path: tuple[str, str | None] | None,
        pending: _Pending,
        by_type: dict[str, AuditRecord],
        primary: AuditRecord,
        index: int,
    ) -> Event:
        fields = primary.fields
        success = _outcome(fields)
        user_id = _user_id(event_type, fields)
        host = primary.node or self.context.host
        audit: dict[str, Any] = {
            "type": primary.type,
            "serial": primary.serial,
            "records": [r.type for r in pending.records],
        }
        for name in _RECORD_FIELDS:
            value = _known(fields.get(name))
            if value is not None:
                audit[name] = value
        if primary.type == "SYSCALL":
            audit.update((name, fields[name]) for name in _SYSCALL_ARGS if name in fields)
        if success is not None:
            audit["success"] = success
        outcome = "unknown" if success is None else "success" if success else "failure"
        process: dict[str, Any] = {}
        if (pid := _int(fields.get("pid"))) is not None:
            process["pid"] = pid
        if comm := _known(fields.get("comm")):
            process["name"] = comm
        elif exe := _known(fields.get("exe")):
            process["name"] = posixpath.basename(exe)
        if exe := _known(fields.get("exe")):
            process["executable"] = exe
        details: dict[str, Any] = {
            "event": {
                "original": "\n".join(r.raw for r in pending.records),
                # the system call's name (ENRICHED, else from its number), else the record type
                "action": _action(primary),
                "outcome": outcome,
                "dataset": "auditd",
            },
            "audit": audit,
            "process": process,
        }
        if user_id is not None:
            details["user"] = {"name": user_id}
        if host:
            details["host"] = {"hostname": host}
        if addr := _known(fields.get("addr")):
            details["source"] = {"ip": addr}
        self._specifics(event_type, path, fields, by_type, details, pending.records)
        return make_event(
            event_type=event_type,
            timestamp=primary.timestamp,
            details=details,
            key=pending.key,
            index=index,
            source_service="auditd",
            server_hostname=host,
            user_id=user_id,
            action_result=None if success is None else "SUCCESS" if success else "FAILURE",
        )

    @staticmethod
    def _specifics(
        event_type: str,
        path: tuple[str, str | None] | None,
        fields: dict[str, str],
        by_type: dict[str, AuditRecord],
        details: dict[str, Any],
        records: list[AuditRecord],
    ) -> None:
        if event_type == "sudo_command":
            details["command"] = fields.get("cmd", "")
            if cwd := fields.get("cwd"):
                details["process"]["working_directory"] = cwd
            if tty := _known(fields.get("terminal")):
                details["tty"] = tty
        elif event_type in {"user_created", "user_deleted"}:
            account = _known(fields.get("acct")) or _name(fields, "id", "ID")
            if account is not None:
                details["user"] = {**details.get("user", {}), "target": {"name": account}}
                if event_type == "user_created":
                    details["new_user"] = account
        elif event_type == "process_started":
            args = list(by_type["EXECVE"].args)
            details["process"]["args"] = args
            details["process"]["command_line"] = " ".join(args)
            details["audit"]["execve"] = {f"a{n}": arg for n, arg in enumerate(args[:MAX_EXECVE_FIELDS])}
            if "CWD" in by_type and (cwd := by_type["CWD"].fields.get("cwd")):
                details["process"]["working_directory"] = cwd
            if (ppid := _int(fields.get("ppid"))) is not None:
                details["process"]["parent"] = {"pid": ppid}
        elif event_type == "file_modified" and path is not None:
            name, nametype = path
            details["resource"] = name
            details["file"] = {"path": name}
            if nametype is not None:
                details["audit"]["nametype"] = nametype
        elif event_type == "service_state_change":
            stopped_badly = records[0].type == "SERVICE_STOP" and _outcome(fields) is False
            state = "failed" if stopped_badly else _SERVICE_STATES[records[0].type]
            details.update(service=fields["unit"].removesuffix(".service"), state=state, expected=not stopped_badly)
        elif event_type == "network_connection":
            peer = inet_peer(_saddr(by_type))
            if peer is not None:
                details["destination"] = {"ip": peer[0], "port": peer[1]}
                details["network"] = {"initiated": True}  # connect(): this process opened it
        if event_type in ("audit_syscall", "network_connection"):
            # a system call without EXECVE: where it ran and the files it named, if any
            cwd = by_type["CWD"].fields.get("cwd") if "CWD" in by_type else None
            if cwd:
                details["process"]["working_directory"] = cwd
            if (ppid := _int(fields.get("ppid"))) is not None:
                details["process"]["parent"] = {"pid": ppid}
            names = [name for name, _ in _watched_paths(records, cwd)]
            if names:
                details["file"] = {"path": names[0] if len(names) == 1 else names}
