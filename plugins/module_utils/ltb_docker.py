# LTB module_utils: the Docker Engine API over its unix socket, with the standard library only.
#
# The hypervisor has Debian's python3 and the platform packages, not the Docker SDK. One HTTP
# request costs microseconds of CPU here, where each `docker` CLI run is a process start-up
# (bench/README.md, chain section). Every call opens its own connection, so threads may share a
# client.
from __future__ import annotations

import base64
import http.client
import json
import os
import socket
from urllib.parse import quote, urlencode

# The daemon's socket, as the docker CLI finds it: DOCKER_HOST when it names a unix socket (a
# hypervisor whose sshd sets it, e.g. tests/multihost), else Docker's default.
_DOCKER_HOST = os.environ.get("DOCKER_HOST", "")
DEFAULT_SOCKET = (
    _DOCKER_HOST[len("unix://") :] if _DOCKER_HOST.startswith("unix://") else "/var/run/docker.sock"
)


class DockerError(Exception):
    """A request Docker refused: `status` is the HTTP status, the message Docker's."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout):
        super().__init__("localhost", timeout=timeout)
        self.socket_path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.socket_path)


class Docker:
    def __init__(self, socket_path=DEFAULT_SOCKET, timeout=120):
        self.socket_path = socket_path
        self.timeout = timeout

    def request(self, method, path, query=None, body=None, content_type="application/json"):
        """(status, headers, body bytes); a status of 400 or more raises DockerError."""
        if query:
            path = f"{path}?{urlencode(query)}"
        headers = {}
        if body is not None and not isinstance(body, bytes):
            body = json.dumps(body).encode()
        if body is not None:
            headers["Content-Type"] = content_type
        connection = _UnixConnection(self.socket_path, self.timeout)
        try:
            connection.request(method, path, body=body, headers=headers)
            response = connection.getresponse()
            data = response.read()
            status, response_headers = response.status, response.headers
        except OSError as error:
            raise DockerError(0, f"Docker at {self.socket_path}: {error}") from None
        finally:
            connection.close()
        if status >= 400:
            try:
                message = json.loads(data)["message"]
            except (ValueError, KeyError, TypeError):
                message = data.decode(errors="replace").strip() or f"HTTP {status}"
            raise DockerError(status, message)
        return status, response_headers, data

    def get_json(self, path, query=None):
        return json.loads(self.request("GET", path, query)[2] or b"null")

    # Images and containers ------------------------------------------------------------------

    def image(self, name):
        """The image's inspect record, or None when the hypervisor does not have it."""
        try:
            return self.get_json(f"/images/{quote(name, safe='/:@')}/json")
        except DockerError as error:
            if error.status == 404:
                return None
            raise

    def containers_labelled(self, label):
        """Summaries of every container, running or not, with the label `key=value`."""
        filters = json.dumps({"label": [label]})
        return self.get_json("/containers/json", {"all": "1", "filters": filters})

    def inspect(self, container):
        """The container's inspect record, or None when there is none of that name."""
        try:
            return self.get_json(f"/containers/{quote(container)}/json")
        except DockerError as error:
            if error.status == 404:
                return None
            raise

    def create(self, name, config):
        return json.loads(self.request("POST", "/containers/create", {"name": name}, config)[2])[
            "Id"
        ]

    def start(self, container):
        self.request("POST", f"/containers/{quote(container)}/start")  # 304: already running

    def remove(self, container):
        """Removes the container like `docker rm -f`; one already gone is no error."""
        try:
            self.request("DELETE", f"/containers/{quote(container)}", {"force": "1"})
        except DockerError as error:
            if error.status != 404:
                raise

    # Files inside a container (the archive endpoints: nothing runs in the container) ----------

    def path_stat(self, container, path):
        """Docker's stat of `path` in the container (name, size, mode, linkTarget), or None."""
        try:
            _, headers, _ = self.request(
                "HEAD", f"/containers/{quote(container)}/archive", {"path": path}
            )
        except DockerError as error:
            if error.status == 404:
                return None
            raise
        header = headers.get("X-Docker-Container-Path-Stat")
        return json.loads(base64.b64decode(header)) if header else None

    def get_archive(self, container, path):
        return self.request("GET", f"/containers/{quote(container)}/archive", {"path": path})[2]

    def put_archive(self, container, path, tar_bytes):
        self.request(
            "PUT",
            f"/containers/{quote(container)}/archive",
            {"path": path},
            tar_bytes,
            content_type="application/x-tar",
        )
