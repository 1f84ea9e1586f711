"""Where ltb.capture reaches a hypervisor: the SSH settings of its inventory entry."""

from __future__ import annotations

from pathlib import Path

import pytest

from ltb.capture import PLATFORM_KEY, CaptureError, SshHypervisor, ssh_hypervisor


def test_a_locally_driven_hypervisor_needs_no_ssh():
    assert ssh_hypervisor("localhost", {"ansible_connection": "local"}) is None


def test_ssh_settings_come_from_the_inventory_vars():
    found = ssh_hypervisor(
        "hv2",
        {
            "ansible_host": "192.0.2.7",
            "ansible_port": 2222,
            "ansible_user": "ltb",
            "ansible_ssh_private_key_file": "/etc/ltb/key",
        },
    )
    assert found == SshHypervisor("hv2", "192.0.2.7", 2222, "ltb", Path("/etc/ltb/key"))
    argv = found.argv("ltb-capture", "lab", "a:eth1")
    assert argv[:3] == ["ssh", "-l", "ltb"]
    assert argv[argv.index("-p") + 1] == "2222"
    assert argv[argv.index("-i") + 1] == "/etc/ltb/key"
    assert argv[-3:] == ["ltb-capture", "lab", "a:eth1"]


def test_defaults_are_the_host_name_root_and_the_platform_key():
    assert ssh_hypervisor("hv3", {}) == SshHypervisor("hv3", "hv3", None, "root", PLATFORM_KEY)


@pytest.mark.parametrize(
    "host_vars",
    [{"ansible_host": "{{ lookup('env', 'X') }}"}, {"ansible_user": "root -o ProxyCommand=x"}],
)
def test_a_setting_that_is_not_plain_data_is_refused(host_vars):
    with pytest.raises(CaptureError, match="cannot be used"):
        ssh_hypervisor("hv4", host_vars)
