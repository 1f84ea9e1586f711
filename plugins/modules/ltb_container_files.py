#!/usr/bin/python
# LTB module: a container node's startup files, in one Docker API call.
from __future__ import annotations

DOCUMENTATION = r"""
module: ltb_container_files
short_description: The startup files of a container node, written in one archive
description:
  - Runs on the hypervisor (the Docker Engine API over its socket, standard library only;
    plugins/module_utils/ltb_container_files.py, shared with ltb_lab_containers). Reads each
    file from the container and writes those whose content or mode differ in one tar archive
    (C(put_archive) at C(/)).
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

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.ltb_container_files import (
    StartupFileError,
    files_to_write,
    wanted_files,
    write_files,
)
from ansible.module_utils.ltb_docker import Docker, DockerError


def main():
    module = AnsibleModule(
        argument_spec=dict(
            container=dict(type="str", required=True),
            files=dict(type="list", elements="dict", required=True),
        ),
        supports_check_mode=True,
    )
    container = module.params["container"]
    docker = Docker()
    try:
        wanted = wanted_files(module.params["files"])
        todo = files_to_write(docker, container, wanted)
        if todo and not module.check_mode:
            write_files(docker, container, todo)
    except StartupFileError as error:
        module.fail_json(msg=f"container {container}: {error}")
    except DockerError as error:
        module.fail_json(msg=f"container {container}: {error}")
    module.exit_json(changed=bool(todo), written=[f[0] for f in todo])


if __name__ == "__main__":
    main()
