"""The image builds' apt sources default to the file the hypervisor has (module_utils
ltb_apt_sources, run by module ltb_apt_sources in roles node_image and vm_image): hosts keep
their Debian sources in different files, and a path fixed to this machine's failed elsewhere."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from ltb.module_utils import load
from tests.adhoc import run_module

apt_sources = load("ltb_apt_sources").apt_sources
REPO = Path(__file__).resolve().parents[2]

DEBIAN_DEB822 = """Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
"""


def host(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / "etc" / "apt" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_a_host_from_debians_installer_uses_its_sources_list(tmp_path):
    root = host(
        tmp_path,
        {
            "sources.list": "# deb cdrom:[Debian GNU/Linux 12]/ bookworm main\n\n"
            "deb http://deb.debian.org/debian/ bookworm main\n"
            "deb-src http://deb.debian.org/debian/ bookworm main\n",
            "sources.list.d/.keep": "",
        },
    )
    assert apt_sources(root) == root / "etc/apt/sources.list"


def test_an_mmdebstrap_root_file_system_uses_its_0000debian_sources(tmp_path):
    root = host(tmp_path, {"sources.list.d/0000debian.sources": DEBIAN_DEB822})
    assert apt_sources(root) == root / "etc/apt/sources.list.d/0000debian.sources"


def test_debians_sources_win_over_other_archives_and_disabled_entries(tmp_path):
    root = host(
        tmp_path,
        {
            # Before debian.sources by name, but not Debian's archive.
            "sources.list.d/aaa-docker.sources": "Types: deb\n"
            "URIs: https://download.docker.com/linux/ubuntu\nSuites: jammy\nComponents: stable\n",
            # Debian's, but disabled, or source packages only.
            "sources.list.d/b-off.sources": "Enabled: no\n" + DEBIAN_DEB822,
            "sources.list.d/c-src.sources": DEBIAN_DEB822.replace("Types: deb", "Types: deb-src"),
            "sources.list.d/debian.sources": DEBIAN_DEB822,
            "sources.list.d/nodesource.sources.disabled-by-farm": DEBIAN_DEB822,
            "sources.list": "deb [arch=amd64] http://deb.debian.org/debian bookworm main\n",
        },
    )
    assert apt_sources(root) == root / "etc/apt/sources.list.d/debian.sources"
    (root / "etc/apt/sources.list.d/debian.sources").unlink()
    # Next: the one-line file, its options block before the URI.
    assert apt_sources(root) == root / "etc/apt/sources.list"
    (root / "etc/apt/sources.list").unlink()
    # A local mirror without "debian" in its URI still serves when it is all there is.
    assert apt_sources(root) == root / "etc/apt/sources.list.d/aaa-docker.sources"


def test_a_host_without_sources_has_none(tmp_path):
    root = host(tmp_path, {"sources.list": "# deb http://deb.debian.org/debian bookworm main\n"})
    assert apt_sources(root) is None


@pytest.mark.parametrize("role", ["node_image", "vm_image"])
def test_the_image_roles_default_to_the_hosts_own_sources_and_the_variable_wins(role):
    defaults = yaml.safe_load((REPO / "roles" / role / "defaults/main.yml").read_text())
    assert defaults[f"{role}_mirror"] == ""
    build = yaml.safe_load((REPO / "roles" / role / "tasks/build.yml").read_text())
    tasks = build[0]["block"]
    found = next(t for t in tasks if "ltb_apt_sources" in t)
    assert found["when"] == f"not {role}_mirror"
    assert found["ltb_apt_sources"]["variable"] == f"{role}_mirror"
    assert f"{role}_mirror or {role}_apt_sources.sources" in yaml.safe_dump(tasks, width=1000)


@pytest.mark.integration
def test_the_module_names_the_host_and_the_variable_when_the_host_has_no_sources(tmp_path):
    # One Ansible run (seconds): what it finds elsewhere is apt_sources', tested above.
    result = run_module(
        "ltb_apt_sources", f"host=pk-hv9 variable=node_image_mirror root={tmp_path}"
    )
    assert result.get("failed") is True
    assert result["msg"].startswith("hypervisor pk-hv9: no apt sources")
    assert "set node_image_mirror" in result["msg"]
