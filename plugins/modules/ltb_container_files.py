#!/usr/bin/python
# LTB module: a container node's startup files, in one Docker API call.
from __future__ import annotations

DOCUMENTATION = r"""
module: ltb_container_files
short_description: The startup files of a container node, written in one archive
description:
  - Runs on the hypervisor (Docker SDK for Python). Reads each file from the container and
    writes those whose content or mode differ in one tar archive (C(put_archive) at C(/)).
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


def current_file(container, path):
    """(content, mode) of a regular file in the container, or None."""
    try:
        stream, _ = container.get_archive(path)
    except docker.errors.NotFound:
        return None
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
        todo = [f for f in wanted if current_file(container, f[0]) != (f[1], f[2])]
        if todo and not module.check_mode:
            container.put_archive("/", archive_of(todo))
    except docker.errors.DockerException as error:
        module.fail_json(msg=f"container {module.params['container']}: {error}")
    finally:
        client.close()
    module.exit_json(changed=bool(todo), written=[f[0] for f in todo])


if __name__ == "__main__":
    main()
