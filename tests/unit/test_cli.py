"""The ltb command line: what it prints for a lab and how it reports bad files."""

from ipaddress import IPv4Network

from ltb.allocation import Registry
from ltb.cli import main
from ltb.topology import load_lab

TOPOLOGY = """
name: cli
nodes:
  c1: {}
  v1: {kind: vm}
"""


def test_reach_offers_docker_exec_only_for_containers(tmp_path, capsys):
    path = tmp_path / "cli.lab.yml"
    path.write_text(TOPOLOGY)
    assert main(["reach", str(path), "--state-dir", str(tmp_path)]) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()[1:3]}
    assert "docker exec -it ltb-cli.c1 bash" in lines["c1"]
    assert "ssh -i" in lines["v1"] and "docker exec" not in lines["v1"]


def test_reach_shows_the_addresses_the_registry_holds_not_the_preferred_ones(tmp_path, capsys):
    path = tmp_path / "cli.lab.yml"
    path.write_text(TOPOLOGY)
    Registry(tmp_path).allocate(load_lab(path), IPv4Network("10.9.9.0/24"))
    assert main(["reach", str(path), "--state-dir", str(tmp_path)]) == 0
    out, err = capsys.readouterr()
    assert "management network 10.9.9.0/24" in out and "root@10.9.9.2" in out
    assert "not deployed" not in err


def test_reach_says_when_a_lab_is_not_deployed(tmp_path, capsys):
    path = tmp_path / "cli.lab.yml"
    path.write_text(TOPOLOGY)
    assert main(["reach", str(path), "--state-dir", str(tmp_path)]) == 0
    assert "lab cli is not deployed" in capsys.readouterr().err


def test_validate_reports_every_error_and_fails(tmp_path, capsys):
    path = tmp_path / "bad.lab.yml"
    path.write_text("name: Bad\nnodes: {a: {kind: router}}\n")
    assert main(["validate", str(path)]) == 1
    err = capsys.readouterr().err
    assert "name: lab name 'Bad' is not allowed" in err
    assert "nodes.a.kind: unknown node kind 'router'" in err
