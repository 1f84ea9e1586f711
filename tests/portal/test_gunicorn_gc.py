"""The portal's gunicorn workers keep the collector's pauses short (portal/gunicorn.conf.py):
once a worker has loaded the app, what it made is frozen out of the collector's scans and its
youngest generation is collected less often. Run in a fresh interpreter, as a worker is."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

CONF = Path(__file__).resolve().parents[2] / "portal" / "gunicorn.conf.py"

WORKER = f"""
import gc, json, runpy
conf = runpy.run_path({str(CONF)!r})
before = gc.get_freeze_count()
loaded = [[i] for i in range(10_000)]  # what loading the app leaves behind
tracked = len(gc.get_objects())
conf["post_worker_init"](None)
print(json.dumps({{"before": before, "tracked": tracked, "frozen": gc.get_freeze_count(),
                  "left": len(gc.get_objects()),
                  "threshold": gc.get_threshold(), "gen0": conf["GC_GEN0_THRESHOLD"]}}))
"""


def test_a_worker_freezes_what_it_loaded_and_collects_its_young_less_often():
    done = subprocess.run(
        [sys.executable, "-c", WORKER], capture_output=True, text=True, check=True, timeout=60
    )
    found = json.loads(done.stdout)
    assert found["before"] == 0
    assert found["tracked"] > 10_000 and found["frozen"] >= found["tracked"] - 100
    assert found["left"] < 100  # nothing of it is scanned any more
    assert found["threshold"][0] == found["gen0"] > 700  # 700: CPython's default
