"""Which apt sources file of a host the image builds give mmdebstrap (node_image, vm_image).

Hosts keep their Debian sources in different files: this one in
/etc/apt/sources.list.d/debian.sources (deb822), a host from Debian's installer in
/etc/apt/sources.list (one-line), a root file system made by mmdebstrap in
/etc/apt/sources.list.d/0000debian.sources. The file is decided here, and only here: the
first of the deb822 `*.sources` files (in name order), then sources.list, that has an
enabled `deb` entry of a Debian archive (a URI with "debian" in it); else the first with any
enabled `deb` entry; else none. Standard library only: it runs on the hypervisor.
"""

from __future__ import annotations

from pathlib import Path

SOURCES_DIR = "etc/apt/sources.list.d"
SOURCES_LIST = "etc/apt/sources.list"


def _deb822_uris(text: str) -> list[str]:
    """The URIs of the enabled `deb` stanzas of a deb822 sources file."""
    uris = []
    for stanza in text.split("\n\n"):
        fields = {}
        for line in stanza.splitlines():
            if line.startswith("#") or ":" not in line or line[:1].isspace():
                continue
            key, _, value = line.partition(":")
            fields[key.strip().lower()] = value.strip()
        if "deb" in fields.get("types", "").split() and fields.get("enabled", "yes") != "no":
            uris += fields.get("uris", "").split()
    return uris


def _one_line_uris(text: str) -> list[str]:
    """The URIs of the `deb` lines of a one-line sources.list."""
    uris = []
    for line in text.splitlines():
        words = line.split("#", 1)[0].split()
        if words[:1] == ["deb"]:
            # An options block ([arch=amd64 signed-by=...]) may come before the URI.
            rest = words[1:]
            if rest and rest[0].startswith("["):
                while rest and not rest[0].endswith("]"):
                    rest = rest[1:]
                rest = rest[1:]
            uris += rest[:1]
    return uris


def candidates(root: Path = Path("/")) -> list[Path]:
    """The files looked at, in order: sources.list.d/*.sources by name, then sources.list."""
    found = sorted((root / SOURCES_DIR).glob("*.sources"))
    return [path for path in [*found, root / SOURCES_LIST] if path.is_file()]


def apt_sources(root: Path = Path("/")) -> Path | None:
    """The sources file the image builds use on the host whose root is `root` (see above)."""
    with_entries = []
    for path in candidates(root):
        text = path.read_text(errors="replace")
        uris = _deb822_uris(text) if path.suffix == ".sources" else _one_line_uris(text)
        if any("debian" in uri for uri in uris):
            return path
        if uris:
            with_entries.append(path)
    return with_entries[0] if with_entries else None
