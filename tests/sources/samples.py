"""Sample log lines for the source tests, as sshd and a classic syslogd write them."""

from __future__ import annotations


def auth_log(user: str = "root", host: str = "web1", failures: int = 5, month: str = "Mar") -> str:
    """An auth.log with a brute force (`failures` failed passwords, then a success) and noise."""
    lines = [
        f"{month}  3 04:12:0{i} {host} sshd[4242]: Failed password for {user} from 203.0.113.9 port 5{i} ssh2"
        for i in range(failures)
    ]
    # the classic syslogd's repeat notice names no program: a line no parser understands (no-header)
    lines.insert(1, f"{month}  3 04:12:00 {host} last message repeated 2 times")
    lines.append(f"{month}  3 04:12:09 {host} sshd[4242]: Accepted password for {user} from 203.0.113.9 port 60 ssh2")
    lines.append(f"{month}  3 04:12:09 {host} sshd[4242]: Received disconnect from 203.0.113.9 port 60:11: bye")
    return "\n".join(lines) + "\n"
