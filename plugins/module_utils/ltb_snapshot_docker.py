# LTB module_utils: the Docker Engine API calls a snapshot makes, on the platform's stdlib
# client (ltb_docker: the hypervisor's python3 has no Docker SDK). A module killed outright
# closes the socket, so Docker ends what it was asked, as with the SDK; a `docker` CLI child
# would outlive the module and finish a commit nobody owns any more.
from __future__ import annotations

import json
from urllib.parse import quote

from ansible.module_utils.ltb_docker import Docker as _Docker
from ansible.module_utils.ltb_docker import DockerError

__all__ = ["Docker", "DockerError"]

# A commit copies the container's layer: a big one takes minutes on a busy disk.
COMMIT_TIMEOUT = 1800


class Docker(_Docker):
    def container(self, name):
        """The container's inspect data, None when there is none of that name."""
        return self.inspect(name)

    def container_layer_bytes(self, container_id):
        filters = json.dumps({"id": [container_id]})
        listed = self.get_json("/containers/json", {"all": "1", "size": "1", "filters": filters})
        return (listed[0].get("SizeRw") or 0) if listed else 0

    def processes(self, name):
        top = self.get_json(f"/containers/{quote(name)}/top", {"ps_args": "-eo pid,comm"})
        return top.get("Processes") or []

    def commit(self, container, repository, tag):
        """Docker pauses the container for the commit and resumes it, also if we die here."""
        query = {"container": container, "repo": repository, "tag": tag, "pause": "1"}
        committer = _Docker(self.socket_path, timeout=COMMIT_TIMEOUT)
        return json.loads(committer.request("POST", "/commit", query, {})[2])["Id"]

    def image_id(self, reference):
        """The image's id, None when there is none of that name."""
        found = self.image(reference)
        return found["Id"] if found else None

    def image_tags(self, reference_pattern):
        """Every name of the images whose name matches the pattern (`repo/*`)."""
        filters = json.dumps({"reference": [reference_pattern]})
        images = self.get_json("/images/json", {"filters": filters})
        return [tag for image in images for tag in (image.get("RepoTags") or [])]

    def tag(self, image, reference):
        repository, tag = reference.rsplit(":", 1)
        self.request(
            "POST", f"/images/{quote(image, safe='/:@')}/tag", {"repo": repository, "tag": tag}
        )

    def remove_image(self, reference, force=False):
        """Remove an image name; False when there was none."""
        try:
            self.request(
                "DELETE",
                f"/images/{quote(reference, safe='/:@')}",
                {"force": "1" if force else "0"},
            )
        except DockerError as error:
            if error.status == 404:
                return False
            raise
        return True
