"""Account changes as shadow-utils (4.13+) logs them: useradd, userdel, usermod, groupadd,
groupdel, gpasswd, passwd and chpasswd.

shadow-utils writes every change to /etc/group and to /etc/gshadow and logs both ("add 'bob' to
group 'sudo'", "add 'bob' to shadow group 'sudo'"); only the first makes an event, so one change is
one event. groupadd also logs each file it wrote before "new group: ...", which is the one kept.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from auditflow.model.event import Event
from auditflow.parsers.base import Unparsed
from auditflow.parsers.emit import Message
from auditflow.parsers.pam import UNKNOWN, parse_pam_unix

_NEW_USER = re.compile(r"new user: name=([^,]*), UID=(\d+), GID=(\d+), home=([^,]*), shell=([^,]*)(?:, from=(.*))?")
_NEW_GROUP = re.compile(r"new group: name=([^,]*), GID=(\d+)")
_GROUP_MEMBER = re.compile(r"(add|delete) '([^']*)' (?:to|from) group '([^']*)'")
_GPASSWD_MEMBER = re.compile(r"user (\S+) (added|removed) by (\S+) (?:to|from) group (\S+)")
_GPASSWD_SET = re.compile(r"members of group (\S+) set by (\S+) to (.*)")
_DELETE_USER = re.compile(r"delete user '([^']*)'")
_REMOVED_GROUP = re.compile(r"(?:removed group '([^']*)' owned by '[^']*'|group '([^']*)' removed)")
_CHANGE_USER = re.compile(r"(?:change|lock|unlock) user (?:name )?'([^']*)'.*", re.DOTALL)
_PASSWORD = re.compile(r"password for '([^']*)' changed by '([^']*)'")

# Mirrors of a change already logged (gshadow) and the files groupadd/groupdel wrote.
_QUIET = (
    "add '",  # only reached for "add '...' to shadow group '...'"
    "delete '",
    "removed shadow group ",
    "group added to ",
)
_QUIET_SUFFIXES = (" removed from /etc/group", " removed from /etc/gshadow")


def parse_accounts(msg: Message) -> Sequence[Event] | Unparsed:
    msg.dataset = "accounts"
    text = msg.text
    if text.startswith("pam_unix("):
        return parse_pam_unix(msg, text)
    if (match := _NEW_USER.fullmatch(text)) is not None:
        name, uid, gid, home, shell, origin = match.groups()
        account = {"uid": int(uid), "gid": int(gid), "home": home, "shell": shell}
        if origin:
            account["from"] = origin
        extra: dict[str, Any] = {"new_user": name, "groups": [], "account": account}
        extra["user"] = {"target": {"name": name, "id": uid}}
        return (msg.event("user_created", "user_created", result="SUCCESS", extra=extra),)
    if (match := _NEW_GROUP.fullmatch(text)) is not None:
        group, gid = match.groups()
        extra = {"group": group, "gid": int(gid)}
        return (msg.event("group_created", "group_created", result="SUCCESS", extra=extra),)
    if (match := _GROUP_MEMBER.fullmatch(text)) is not None:
        verb, member, group = match.groups()
        return (_membership(msg, "add" if verb == "add" else "remove", member, group, None),)
    if (match := _GPASSWD_MEMBER.fullmatch(text)) is not None:
        member, verb, actor, group = match.groups()
        return (_membership(msg, "add" if verb == "added" else "remove", member, group, actor),)
    if (match := _GPASSWD_SET.fullmatch(text)) is not None:
        group, actor, members = match.groups()
        extra = {"group": group, "action": "set", "members": [m for m in members.split(",") if m]}
        return (msg.event("group_modified", "group_members_set", result="SUCCESS", user=actor, extra=extra),)
    if (match := _DELETE_USER.fullmatch(text)) is not None:
        extra = {"user": {"target": {"name": match.group(1)}}}
        return (msg.event("user_deleted", "user_deleted", result="SUCCESS", extra=extra),)
    if (match := _REMOVED_GROUP.fullmatch(text)) is not None:
        group = match.group(1) if match.group(1) is not None else match.group(2)
        return (msg.event("group_deleted", "group_deleted", result="SUCCESS", extra={"group": group}),)
    if (match := _CHANGE_USER.fullmatch(text)) is not None:
        extra = {"user": {"target": {"name": match.group(1)}}, "modification": text}
        return (msg.event("user_modified", "user_modified", result="SUCCESS", extra=extra),)
    if (match := _PASSWORD.fullmatch(text)) is not None:
        target, actor = match.groups()
        extra = {"user": {"target": {"name": target}}}
        return (msg.event("password_changed", "password_changed", result="SUCCESS", user=actor, extra=extra),)
    if text.startswith(_QUIET) or text.endswith(_QUIET_SUFFIXES):
        return ()
    return UNKNOWN


def _membership(msg: Message, action: str, member: str, group: str, actor: str | None) -> Event:
    extra = {"group": group, "member": member, "action": action, "user": {"target": {"name": member}}}
    return msg.event("group_modified", f"group_member_{action}", result="SUCCESS", user=actor, extra=extra)
