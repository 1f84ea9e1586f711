# LTB module_utils: a container node's startup files, compared and written through the Docker
# Engine API's archive endpoints (ltb_docker): nothing runs in the node, the image needs no tools.
from __future__ import annotations

import io
import posixpath
import tarfile

DEFAULT_MODE = "0644"

# Go's os.FileMode bits in Docker's path stat: the directory bit, and every bit of a
# non-regular file (directory, symlink, pipe, socket, device, irregular).
GO_MODE_DIR = 1 << 31
GO_MODE_LINK = 1 << 27
GO_MODE_TYPE = GO_MODE_DIR | GO_MODE_LINK | 1 << 25 | 1 << 24 | 1 << 26 | 1 << 21 | 1 << 19


class StartupFileError(Exception):
    pass


def wanted_files(files):
    """[(path, content bytes, mode int)] of the module's `files` option; a path that is not an
    absolute file path raises StartupFileError."""
    wanted = []
    for item in files:
        path = item.get("path", "")
        if not path.startswith("/") or path.endswith("/"):
            raise StartupFileError(f"startup file path {path!r} is not an absolute file path")
        mode = int(str(item.get("mode") or DEFAULT_MODE), 8)
        wanted.append((path, str(item.get("content", "")).encode(), mode))
    return wanted


def _is_directory(docker, container, path, stat):
    """Whether `path` is a directory, or a symbolic link to one (writing the file would
    replace the link, e.g. /bin -> usr/bin)."""
    for _ in range(8):  # links followed, as the kernel's own limit is for a path
        if stat is None or not stat["mode"] & GO_MODE_LINK:
            break
        path = posixpath.join(posixpath.dirname(path), stat["linkTarget"])
        stat = docker.path_stat(container, path)
    return stat is not None and bool(stat["mode"] & GO_MODE_DIR)


def current_file(docker, container, path, wanted_size):
    """(content, mode) of a regular file in the container, or None when there is none or its
    size already differs. Only a file of the wanted size is read: a path that is a large file
    or a directory (e.g. /usr, which would come whole as a tar) is never read into memory."""
    stat = docker.path_stat(container, path)
    if stat is None:
        return None
    if _is_directory(docker, container, path, stat):
        raise StartupFileError(
            f"startup file {path} is a directory (or a link to one) in the node; a startup "
            "file must name a file (nothing was written)"
        )
    if stat["mode"] & GO_MODE_TYPE or stat["size"] != wanted_size:
        return None
    with tarfile.open(fileobj=io.BytesIO(docker.get_archive(container, path))) as archive:
        member = archive.next()
        if member is None or not member.isfile():
            return None
        return archive.extractfile(member).read(), member.mode & 0o7777


def files_to_write(docker, container, wanted):
    """The wanted files whose content or mode differ in the container. Every file is checked
    before any is written."""
    return [f for f in wanted if current_file(docker, container, f[0], len(f[1])) != (f[1], f[2])]


def archive_of(files):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for path, content, mode in files:
            info = tarfile.TarInfo(path.lstrip("/"))
            info.size, info.mode, info.uid, info.gid = len(content), mode, 0, 0
            archive.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def write_files(docker, container, files):
    """Writes the files in one archive at /. Missing parent directories are made by Docker
    (mode 0755); files are owned by root."""
    docker.put_archive(container, "/", archive_of(files))
