#!/usr/bin/python
# LTB module: directories and files of a platform role, in one module run.
from __future__ import annotations

DOCUMENTATION = r"""
module: ltb_files
short_description: Directories and files of a platform role, made true in one module run
description:
  - The platform's roles need a handful of directories and small files each (the bastion's
    root-owned directories, the capture command's code, the portal's state directories).
    With M(ansible.builtin.file) and M(ansible.builtin.copy) that is a module run per path;
    this module makes them all true in one, so that a run of site.yml that changes nothing
    costs one module run per role here.
  - O(directories) are made first (parents too), then O(files) written where their content,
    mode, owner or group differ (atomically; the mode and owner are set before the content).
  - Check mode reports what would change. A diff shows a file's content unless O(files[].secret).
options:
  directories:
    description: Directories that must exist.
    type: list
    elements: dict
    default: []
    suboptions:
      path: {description: Absolute path., type: path, required: true}
      mode: {description: Octal mode., type: str, default: "0755"}
      owner: {description: Owner (unset, as it is)., type: str}
      group: {description: Group (unset, as it is)., type: str}
  files:
    description: Files with this exact content.
    type: list
    elements: dict
    default: []
    suboptions:
      path: {description: Absolute path., type: path, required: true}
      content: {description: The whole content., type: str, required: true}
      mode: {description: Octal mode., type: str, default: "0644"}
      owner: {description: Owner (unset, as it is)., type: str}
      group: {description: Group (unset, as it is)., type: str}
      secret: {description: The content is secret (no diff)., type: bool, default: false}
"""

RETURN = r"""
changed_paths:
  description: The directories and files that were (or in check mode would be) made or changed.
  type: list
  elements: str
  returned: always
"""

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.ltb_files import ensure_directory, ensure_file

OWNED = {"owner": {"type": "str"}, "group": {"type": "str"}}


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "directories": {
                "type": "list",
                "elements": "dict",
                "default": [],
                "options": {
                    "path": {"type": "path", "required": True},
                    "mode": {"type": "str", "default": "0755"},
                    **OWNED,
                },
            },
            "files": {
                "type": "list",
                "elements": "dict",
                "default": [],
                "options": {
                    "path": {"type": "path", "required": True},
                    "content": {"type": "str", "required": True},
                    "mode": {"type": "str", "default": "0644"},
                    "secret": {"type": "bool", "default": False},
                    **OWNED,
                },
            },
        },
        supports_check_mode=True,
    )
    check = module.check_mode
    changed_paths: list[str] = []
    diffs: list[dict] = []
    wanted: dict = {}
    try:
        for wanted in module.params["directories"]:
            owner, group = wanted["owner"], wanted["group"]
            if ensure_directory(wanted["path"], wanted["mode"], check, owner, group):
                changed_paths.append(wanted["path"])
        for wanted in module.params["files"]:
            changed, before = ensure_file(
                wanted["path"],
                wanted["content"],
                wanted["mode"],
                check,
                wanted["owner"],
                wanted["group"],
            )
            if changed:
                changed_paths.append(wanted["path"])
                if not wanted["secret"]:
                    diffs.append(
                        {
                            "before_header": wanted["path"],
                            "after_header": wanted["path"],
                            "before": before or "",
                            "after": wanted["content"],
                        }
                    )
    except (OSError, KeyError) as error:
        # KeyError: an owner or group that does not exist.
        module.fail_json(msg=f"{wanted.get('path')}: {error}", changed_paths=changed_paths)
    module.exit_json(changed=bool(changed_paths), changed_paths=changed_paths, diff=diffs)


if __name__ == "__main__":
    main()
