"""The main job end to end (a few minutes: behind the `slow` marker; `make test-slow`)."""
import subprocess
import sys

import pytest


@pytest.mark.slow
def test_demo_end_to_end_and_cached_rerun(tmp_path):
    out = tmp_path / "demo"
    cmd = [sys.executable, "-m", "seqgap", "demo", "--out", str(out)]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    assert p.returncode == 0, p.stderr[-2000:]
    report = (out / "README.md").read_text()
    assert "| lstm | acot | 2 |" in report and "| transformer | acot | 2 |" in report
    assert (out / "sample_complexity" / "nstar_vs_length.png").stat().st_size > 1000
    assert (out / "length_generalization" / "length_generalization.png").stat().st_size > 1000
    p2 = subprocess.run(cmd, capture_output=True, text=True, timeout=300)  # everything from the store
    assert p2.returncode == 0
    assert ", 0 trained)" in p2.stderr and ", 1 trained)" not in p2.stderr
