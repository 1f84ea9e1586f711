#!/usr/bin/python
# LTB module: every container of a lab removed at once.
from __future__ import annotations

DOCUMENTATION = r"""
module: ltb_lab_containers
short_description: No container labelled with the lab is left on the hypervisor
description:
  - Runs on the hypervisor (Docker SDK for Python). Finds every container, running or not,
    with the label C(ltb.lab=<lab>) and removes them (force, like C(docker rm -f)), several at
    a time. One module run for the whole lab instead of one per node.
  - A lab with no container changes nothing. Check mode reports what would go.
options:
  lab:
    description: Lab name.
    type: str
    required: true
  parallel:
    description: How many containers are removed at the same time.
    type: int
    default: 8
"""

RETURN = r"""
removed:
  description: Names of the containers removed (in check mode, those that would be).
  type: list
  elements: str
  returned: always
"""

from concurrent.futures import ThreadPoolExecutor

from ansible.module_utils.basic import AnsibleModule

try:
    import docker
    import docker.errors
except ImportError as import_error:  # pragma: no cover - shown to the operator
    DOCKER_IMPORT_ERROR = import_error
else:
    DOCKER_IMPORT_ERROR = None


def remove(container):
    try:
        container.remove(force=True)
    except docker.errors.NotFound:
        pass  # gone meanwhile: what was wanted
    except docker.errors.APIError as error:
        return f"{container.name}: {error.explanation or error}"
    return None


def main():
    module = AnsibleModule(
        argument_spec=dict(
            lab=dict(type="str", required=True),
            parallel=dict(type="int", default=8),
        ),
        supports_check_mode=True,
    )
    if DOCKER_IMPORT_ERROR is not None:
        module.fail_json(msg=f"the Docker SDK for Python is missing ({DOCKER_IMPORT_ERROR})")
    client = docker.from_env()
    try:
        found = client.containers.list(
            all=True, filters={"label": f"ltb.lab={module.params['lab']}"}
        )
        names = sorted(container.name for container in found)
        errors = []
        if found and not module.check_mode:
            with ThreadPoolExecutor(max_workers=max(1, module.params["parallel"])) as pool:
                errors = [error for error in pool.map(remove, found) if error]
    except docker.errors.DockerException as error:
        module.fail_json(msg=f"containers of lab {module.params['lab']}: {error}")
    finally:
        client.close()
    if errors:
        module.fail_json(msg="containers not removed: " + "; ".join(errors), removed=names)
    module.exit_json(changed=bool(names), removed=names)


if __name__ == "__main__":
    main()
