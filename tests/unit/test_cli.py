"""The ltb command line: what it prints for a lab and how it reports bad files."""

from ltb.cli import main

TOPOLOGY = """
name: cli
nodes:
  c1: {}
  v1: {kind: vm}
"""


def test_reach_offers_docker_exec_only_for_containers(tmp_path, capsys):
    path = tmp_path / "cli.lab.yml"
    path.write_text(TOPOLOGY)
    assert main(["reach", str(path)]) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()[1:3]}
    assert "docker exec -it ltb-cli.c1 bash" in lines["c1"]
    assert "ssh -i" in lines["v1"] and "docker exec" not in lines["v1"]


def test_validate_reports_every_error_and_fails(tmp_path, capsys):
    path = tmp_path / "bad.lab.yml"
    path.write_text("name: Bad\nnodes: {a: {kind: router}}\n")
    assert main(["validate", str(path)]) == 1
    err = capsys.readouterr().err
    assert "name: lab name 'Bad' is not allowed" in err
    assert "nodes.a.kind: unknown node kind 'router'" in err
