"""Golden tests: each bad topology in topologies/errors/ and every error it must report.

Every expected line must be reported, and nothing else: a bad file gets all of its errors at
once, each with its place.
"""

from pathlib import Path

import pytest

from ltb.topology import TopologyError, load_lab

CASES = sorted((Path(__file__).parent / "topologies" / "errors").glob("*.lab.yml"))


@pytest.mark.parametrize("topology", CASES, ids=lambda path: path.name.removesuffix(".lab.yml"))
def test_bad_topology_reports_every_error_with_its_place(topology: Path):
    expected = topology.with_name(topology.name.replace(".lab.yml", ".errors")).read_text()
    with pytest.raises(TopologyError) as error:
        load_lab(topology)
    assert [str(problem) for problem in error.value.problems] == expected.splitlines()


def test_error_message_names_the_file_and_counts_the_errors():
    with pytest.raises(TopologyError) as error:
        load_lab(CASES[0])
    assert str(error.value).startswith(f"{CASES[0]}: ")
    assert "error(s) in topology" in str(error.value)


def test_missing_file_is_a_topology_error(tmp_path):
    with pytest.raises(TopologyError, match="cannot read the file"):
        load_lab(tmp_path / "nothing.lab.yml")
