"""Connections to a hypervisor are shared only through a directory that is ours and private:
whoever may open a master's socket runs commands there as the platform."""

from __future__ import annotations

from ltb.ssh import shared_connection


def test_a_private_directory_gets_a_master_per_destination_that_outlives_its_command(tmp_path):
    control = tmp_path / "control"
    options = shared_connection(control)
    assert control.is_dir() and control.stat().st_mode & 0o777 == 0o700
    assert options == [
        "-o", "ControlMaster=auto",
        "-o", f"ControlPath={control}/%C",
        "-o", "ControlPersist=60",
    ]  # fmt: skip


def test_a_directory_others_may_enter_shares_nothing(tmp_path):
    control = tmp_path / "control"
    control.mkdir(mode=0o755)
    control.chmod(0o755)
    assert shared_connection(control) == []


def test_a_link_or_a_file_in_its_place_shares_nothing(tmp_path):
    (tmp_path / "elsewhere").mkdir(mode=0o700)
    (tmp_path / "link").symlink_to(tmp_path / "elsewhere")
    (tmp_path / "file").write_text("")
    assert shared_connection(tmp_path / "link") == []
    assert shared_connection(tmp_path / "file") == []


def test_a_directory_that_cannot_be_made_shares_nothing(tmp_path):
    (tmp_path / "file").write_text("")
    assert shared_connection(tmp_path / "file" / "control") == []
