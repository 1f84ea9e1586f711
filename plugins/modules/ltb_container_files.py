#!/usr/bin/python
# LTB module: a container node's startup files, in one Docker API call.
from __future__ import annotations

DOCUMENTATION = r"""
module: ltb_container_files
short_description: The startup files of a container node, written in one archive
description:
  - Runs on the hypervisor (Docker SDK for Python). Reads each file from the container and
    writes those whose content or mode differ in one tar archive (C(put_archive) at C(/)).
    A file is read only when its size is that of the wanted content; a path that is a
    directory in the node fails the module before anything is written.
    Missing parent directories are made by Docker (mode 0755), so no command runs in the
    node and the image needs no tools. Files are owned by root.
  - One module run per node instead of a C(mkdir) and a copy per file.
  - Converges; check mode reports what would be written.
options:
  container:
    description: Name of the running container.
    type: str
    required: true
  files:
    description: The files, each with C(path) (absolute), C(content) and optional C(mode).
    type: list
    elements: dict
    required: true
"""

RETURN = r"""
written:
  description: Paths written (in check mode, those that would be).
  type: list
  elements: str
  returned: always
"""

import io
import posixpath
import tarfile

from ansible.module_utils.basic import AnsibleModule

try:
    import docker
    import docker.errors
except ImportError as import_error:  # pragma: no cover - shown to the operator
    DOCKER_IMPORT_ERROR = import_error
else:
    DOCKER_IMPORT_ERROR = None

DEFAULT_MODE = "0644"


# Go's os.FileMode bits in Docker's path stat: the directory bit, and every bit of a
# non-regular file (directory, symlink, pipe, socket, device, irregular).
GO_MODE_DIR = 1 << 31
GO_MODE_LINK = 1 << 27
GO_MODE_TYPE = GO_MODE_DIR | GO_MODE_LINK | 1 << 25 | 1 << 24 | 1 << 26 | 1 << 21 | 1 << 19


class NotAFile(Exception):
    pass


def path_stat(client, container, path):
    """Docker's stat of `path` in the container (HEAD /containers/ID/archive), or None."""
    response = client.api.head(
        client.api._url("/containers/{0}/archive", container.id), params={"path": path}
    )
    if response.status_code == 404:
        return None
    client.api._raise_for_status(response)
    header = response.headers.get("X-Docker-Container-Path-Stat")
    return docker.utils.decode_json_header(header) if header else None


def _is_directory(client, container, path, stat):
    """Whether `path` is a directory, or a symbolic link to one (writing the file would
    replace the link, e.g. /bin -> usr/bin)."""
    for _ in range(8):  # links followed, as the kernel's own limit is for a path
        if stat is None or not stat["mode"] & GO_MODE_LINK:
            break
        path = posixpath.join(posixpath.dirname(path), stat["linkTarget"])
        stat = path_stat(client, container, path)
    return stat is not None and bool(stat["mode"] & GO_MODE_DIR)


def current_file(client, container, path, wanted_size):
    """(content, mode) of a regular file in the container, or None when there is none or its
    size already differs. Only a file of the wanted size is read: a path that is a large file
    or a directory (e.g. /usr, which would come whole as a tar) is never read into memory."""
    stat = path_stat(client, container, path)
    if stat is None:
        return None
    if _is_directory(client, container, path, stat):
        raise NotAFile(path)
    if stat["mode"] & GO_MODE_TYPE or stat["size"] != wanted_size:
        return None
    stream, _ = container.get_archive(path)
    with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as archive:
        member = archive.next()
        if member is None or not member.isfile():
            return None
        return archive.extractfile(member).read(), member.mode & 0o7777


def archive_of(files):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for path, content, mode in files:
            info = tarfile.TarInfo(path.lstrip("/"))
            info.size, info.mode, info.uid, info.gid = len(content), mode, 0, 0
            archive.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def main():
    module = AnsibleModule(
        argument_spec=dict(
            container=dict(type="str", required=True),
            files=dict(type="list", elements="dict", required=True),
        ),
        supports_check_mode=True,
    )
    if DOCKER_IMPORT_ERROR is not None:
        module.fail_json(msg=f"the Docker SDK for Python is missing ({DOCKER_IMPORT_ERROR})")
    wanted = []
    for item in module.params["files"]:
        path = item.get("path", "")
        if not path.startswith("/") or path.endswith("/"):
            module.fail_json(msg=f"startup file path {path!r} is not an absolute file path")
        mode = int(str(item.get("mode") or DEFAULT_MODE), 8)
        wanted.append((path, str(item.get("content", "")).encode(), mode))
    client = docker.from_env()
    try:
        container = client.containers.get(module.params["container"])
        # Every file is checked before any is written.
        todo = [
            f for f in wanted if current_file(client, container, f[0], len(f[1])) != (f[1], f[2])
        ]
        if todo and not module.check_mode:
            container.put_archive("/", archive_of(todo))
    except NotAFile as error:
        module.fail_json(
            msg=f"container {module.params['container']}: startup file {error} is a directory "
            "(or a link to one) in the node; a startup file must name a file (nothing was written)"
        )
    except docker.errors.DockerException as error:
        module.fail_json(msg=f"container {module.params['container']}: {error}")
    finally:
        client.close()
    module.exit_json(changed=bool(todo), written=[f[0] for f in todo])


if __name__ == "__main__":
    main()
