"""The roles' molecule scenarios (molecule/): converge, a second run that changes nothing,
verify, clean up; on this machine, as the playbooks run them."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = sorted(path.parent.name for path in (ROOT / "molecule").glob("*/molecule.yml"))


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_molecule_scenario_passes(scenario):
    venv_bin = ROOT / ".venv" / "bin"
    env = dict(os.environ, PATH=f"{venv_bin}:{os.environ['PATH']}", ANSIBLE_FORCE_COLOR="0")
    done = subprocess.run(
        [venv_bin / "molecule", "test", "-s", scenario],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert done.returncode == 0, (done.stdout + done.stderr)[-6000:]


def test_there_are_scenarios():
    assert SCENARIOS, "no molecule/*/molecule.yml found"
