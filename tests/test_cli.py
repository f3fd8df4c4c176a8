"""CLI: one-line errors with exit code 2, listings, an end-to-end train."""
import subprocess
import sys

import pytest

from seqgap.cli import main


@pytest.mark.parametrize("argv, msg", [
    (["train", "--task", "nope"], "unknown task"),
    (["train", "--model", "nope"], "unknown model"),
    (["train", "--m", "1"], "m must be >= 2"),
    (["train", "-L", "1"], "L must be >= 2"),
    (["train", "--task", "permutation", "--k", "7"], "k must be in 3..6"),
    (["train", "--d-model", "-5"], "must be positive"),
    (["train", "--n-train", "-1"], ">= 0"),
    (["train", "--size", "galactic"], "unknown size"),
    (["train", "--model-opt", "oops"], "key=value"),
    (["train", "--model-opt", "wings=3"], "unknown option"),
    (["train", "--format", "telepathy"], "format"),
    (["train", "--task", "modadd", "--m", "2", "-L", "3", "--n-train", "100000"], "at most"),
    (["study", "sample-complexity", "--model", "nope"], "unknown model"),
    (["study", "sample-complexity", "--m", "1"], "m must be >= 2"),
    (["study", "sharing", "--length", "x"], "integers"),
])
def test_user_errors_are_one_line_exit_2(argv, msg, capsys, tmp_path):
    code = main(argv + ["--store", str(tmp_path / "s.sqlite")] if argv[0] == "train" else argv)
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert msg in err, err
    assert len(err.splitlines()) == 1 and err.startswith("seqgap: error:")


def test_listings(capsys):
    assert main(["tasks"]) == 0
    out = capsys.readouterr().out
    for name in ("modadd", "permutation", "istree", "mqar"):
        assert name in out
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    for name in ("transformer", "llama", "lstm", "dense-ssm", "mamba", "hybrid"):
        assert name in out


def test_train_end_to_end_and_reuse(tmp_path):
    store = str(tmp_path / "runs.sqlite")
    argv = [sys.executable, "-m", "seqgap", "train", "--task", "parity", "-L", "4", "--format", "acot",
            "--model", "lstm", "--size", "tiny", "--n-train", "10", "--steps", "30", "--eval-every", "10",
            "--store", store, "--no-progress"]
    p = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert "lstm on parity" in p.stdout and "best val loss" in p.stdout and "(from store)" not in p.stdout
    p2 = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert p2.returncode == 0 and "(from store)" in p2.stdout
    p3 = subprocess.run([sys.executable, "-m", "seqgap", "runs", "--store", store], capture_output=True, text=True)
    assert p3.returncode == 0 and "parity" in p3.stdout


def test_bad_usage_exits_2():
    p = subprocess.run([sys.executable, "-m", "seqgap", "train", "--steps", "many"], capture_output=True, text=True)
    assert p.returncode == 2
