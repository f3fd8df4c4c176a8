"""`seqgap runs` filters and exports (CSV, JSON, Parquet) (issue 12, item 8)."""
from __future__ import annotations

import csv
import json

import pytest

from seqgap.cli import main as cli_main
from seqgap.store import RunStore


def _store(tmp_path) -> str:
    path = str(tmp_path / "runs.sqlite")
    s = RunStore(path)
    base = {"task": "modadd", "task_params": {"m": 2, "format": "acot"}, "max_length": 5, "length_dist": "fixed",
            "n_train": 10, "train": {"lr": 1e-3, "seed": 0, "success_loss": 1e-4}, "model_size": "tiny",
            "model_options": {}}
    s.put("a1", {**base, "model": "lstm"}, {"success": True, "best_val_loss": 1e-5, "steps": 10,
                                            "eval_lengths": {"8": {"acc": 1.0}}})
    s.put("b2", {**base, "model": "transformer"}, {"success": False, "best_val_loss": 0.5, "steps": 20})
    s.put("c3", {**base, "model": "lstm", "task": "parity"}, {"success": False, "best_val_loss": 0.25, "steps": 30})
    s.put("n4", {"cell": {"model": "lstm"}, "settings": {}}, {"n_cap": 16, "runs": 2}, kind="nstar")
    s.close()
    return path


def _export(tmp_path, name, *flags):
    out = tmp_path / name
    assert cli_main(["runs", "--store", _store(tmp_path), "--export", str(out), *flags]) == 0
    return out


def test_filters(tmp_path, capsys):
    store = _store(tmp_path)
    for flags, ids in [([], {"a1", "b2", "c3", "n4"}), (["--model", "lstm"], {"a1", "c3"}),
                       (["--task", "modadd"], {"a1", "b2"}), (["--kind", "nstar"], {"n4"}),
                       (["--success", "yes"], {"a1"}), (["--success", "no", "--model", "lstm"], {"c3"}),
                       (["--model", "lstm,transformer", "--task", "modadd"], {"a1", "b2"})]:
        capsys.readouterr()
        assert cli_main(["runs", "--store", store, *flags]) == 0
        assert {line.split()[0] for line in capsys.readouterr().out.splitlines()} == ids, flags
    assert cli_main(["runs", "--store", store, "--success", "maybe"]) == 2
    assert "yes or no" in capsys.readouterr().err


def test_csv_export(tmp_path):
    out = _export(tmp_path, "runs.csv", "--kind", "train")
    rows = list(csv.DictReader(out.open()))
    assert [r["id"] for r in rows] == ["a1", "b2", "c3"]
    a = rows[0]
    assert a["kind"] == "train" and a["model"] == "lstm" and a["task.m"] == "2" and a["train.lr"] == "0.001"
    assert a["success"] == "true" and float(a["best_val_loss"]) == 1e-5
    assert json.loads(a["eval_lengths"]) == {"8": {"acc": 1.0}} and rows[1]["eval_lengths"] == ""


def test_json_export(tmp_path):
    out = _export(tmp_path, "runs.json", "--success", "no")
    recs = json.loads(out.read_text())
    assert [r["id"] for r in recs] == ["b2", "c3"]
    assert recs[0]["model"] == "transformer" and recs[0]["success"] is False and recs[1]["task"] == "parity"


def test_parquet_export(tmp_path):
    pq = pytest.importorskip("pyarrow.parquet")
    out = _export(tmp_path, "runs.parquet")
    table = pq.read_table(out).to_pylist()
    assert [r["id"] for r in table] == ["a1", "b2", "c3", "n4"]
    assert table[0]["model"] == "lstm" and table[3]["kind"] == "nstar"


def test_parquet_without_pyarrow_is_one_line(tmp_path, capsys, monkeypatch):
    import builtins

    real = builtins.__import__

    def no_pyarrow(name, *a, **k):
        if name.startswith("pyarrow"):
            raise ImportError("no pyarrow")
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_pyarrow)
    assert cli_main(["runs", "--store", _store(tmp_path), "--export", str(tmp_path / "r.parquet")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pip install 'seqgap[export]'" in err[0]


def test_unknown_export_format(tmp_path, capsys):
    assert cli_main(["runs", "--store", _store(tmp_path), "--export", str(tmp_path / "r.xlsx")]) == 2
    assert "use .csv, .json or .parquet" in capsys.readouterr().err
