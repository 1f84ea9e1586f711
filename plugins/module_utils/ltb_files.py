"""Directories and files of the platform's roles, made true in one module run (ltb_daemon,
ltb_files): each function says whether it changed (or in check mode would change) anything."""

from __future__ import annotations

import grp
import os
import pwd
import tempfile


def _ids(owner: str | None, group: str | None) -> tuple[int, int]:
    """uid and gid of owner and group names (-1: leave as it is)."""
    uid = pwd.getpwnam(owner).pw_uid if owner else -1
    gid = grp.getgrnam(group).gr_gid if group else -1
    return uid, gid


def _fix_attributes(path: str, mode: str, owner: str | None, group: str | None, check: bool):
    """Mode, owner and group of an existing path; True if one differed."""
    uid, gid = _ids(owner, group)
    now = os.stat(path)
    wrong_owner = (uid != -1 and now.st_uid != uid) or (gid != -1 and now.st_gid != gid)
    wrong_mode = now.st_mode & 0o7777 != int(mode, 8)
    if not check:
        if wrong_owner:
            os.chown(path, uid, gid)
        if wrong_mode:
            os.chmod(path, int(mode, 8))
    return wrong_owner or wrong_mode


def ensure_directory(
    path: str, mode: str, check: bool, owner: str | None = None, group: str | None = None
) -> bool:
    """The directory exists with this mode (and owner, group)."""
    if not os.path.isdir(path):
        if not check:
            os.makedirs(path, exist_ok=True)
            _fix_attributes(path, mode, owner, group, check)
        return True
    return _fix_attributes(path, mode, owner, group, check)


def ensure_file(
    path: str,
    content: str,
    mode: str,
    check: bool,
    owner: str | None = None,
    group: str | None = None,
) -> tuple[bool, str | None]:
    """The file holds `content` with this mode (and owner, group): (changed, content before,
    None when there was no file or it was the same)."""
    data = content.encode()
    try:
        with open(path, "rb") as handle:
            before = handle.read()
    except FileNotFoundError:
        before = None
    if before == data:
        return _fix_attributes(path, mode, owner, group, check), None
    if not check:
        # The new file gets its mode and owner before its content: secrets never lie open.
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".ltb-")
        try:
            os.fchmod(fd, int(mode, 8))
            uid, gid = _ids(owner, group)
            if uid != -1 or gid != -1:
                os.fchown(fd, uid, gid)
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    return True, None if before is None else before.decode(errors="replace")
