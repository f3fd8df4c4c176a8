"""`seqgap card` (tiny battery): the card's contents, a self-contained HTML page, the Markdown and JSON
twins, store reuse (a second card trains only its own model's runs), --match-params, --index, a
failed model check as one line, and `seqgap report` on a study folder and on a store."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

import seqgap.models.registry as registry
from seqgap.store import RunStore

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"


@pytest.fixture(scope="module")
def cards(tmp_path_factory):
    """Two tiny cards on one store: the GRU example, then the delta-rule example."""
    from seqgap.studies.card import make_card

    saved = dict(registry._PLUGINS)
    d = tmp_path_factory.mktemp("cards")
    store = str(d / "runs.sqlite")
    try:
        first = make_card("gru", battery_name="tiny", store_path=store, out=d / "gru", workers=1,
                          plugins=[str(EXAMPLES / "gru.py")], log=lambda s: None)
        ids_after_first = {r["id"] for r in RunStore(store).all(kind="train")}
        second = make_card("delta-rule", battery_name="tiny", store_path=store, out=d / "delta", workers=1,
                           plugins=[str(EXAMPLES / "delta_rule.py")], log=lambda s: None)
        new = [r for r in RunStore(store).all(kind="train") if r["id"] not in ids_after_first]
    finally:
        registry._PLUGINS.clear()
        registry._PLUGINS.update(saved)
    return {"dir": d, "store": store, "first": first, "second": second, "new_rows": new}


def test_card_contents(cards):
    card = json.loads((cards["dir"] / "gru" / "card.json").read_text())
    assert card["seqgap_card"] == 1 and card["model"] == "gru" and card["battery"] == "tiny"
    assert card["seqgap_version"] and card["wall_seconds"] > 0 and card["date"]
    assert [c["id"] for c in card["capabilities"]] == ["nstar", "length_gen", "retrieval"]
    for cap in card["capabilities"]:
        assert cap["rule"] and cap["metric"]
        for row in cap["rows"]:
            roles = [e["role"] for e in row["entries"]]
            assert roles.count("model") == 1 and roles.count("baseline") >= 2, roles
            assert "shortcut" in row
            for e in row["entries"]:
                assert e["config"] and e["seeds"] and "data_seed" in e
                assert e["n_params"] > 0 and e["state_bits"] > 0  # state size next to the accuracy
                if e["ok"]:
                    assert e["interval"] is not None
    ret = next(c for c in card["capabilities"] if c["id"] == "retrieval")
    assert {e["model"] for r in ret["rows"] for e in r["entries"]} == {"gru", "llama", "lstm", "mamba"}
    assert all(e.get("baseline") for r in ret["rows"] for e in r["entries"] if e["ok"])  # shortcut per record
    # zoology's MQAR: one mixed run per model, a row per scored pair count; the attention baseline there
    # is the preset's working variant (short convolution), on IsTree the plain one
    mq = [r for r in ret["rows"] if r["task"] == "mqar-zoology"]
    assert [r["n"] for r in mq] == [2, 4] and all("trained on 2..4 mixed" in r["setting"] for r in mq)
    for model in ("gru", "llama", "lstm", "mamba"):
        assert len({e["run_id"] for r in mq for e in r["entries"] if e["model"] == model}) == 1
    llama = {r["task"]: next(e for e in r["entries"] if e["model"] == "llama") for r in ret["rows"]}
    assert llama["mqar-zoology"]["options"] == {"short_conv": 3} and llama["istree"]["options"] == {}
    assert next(e for e in mq[0]["entries"] if e["role"] == "model")["options"] == {}  # the user's own
    md = (cards["dir"] / "gru" / "card.md").read_text()
    assert "## Summary" in md and "Rule:" in md and "Shortcut baseline" in md and "Exact configs" in md


def test_card_html_is_self_contained(cards):
    text = (cards["dir"] / "gru" / "card.html").read_text()
    assert "<script" not in text and "<link" not in text
    srcs = re.findall(r'src="([^"]+)"', text)
    assert len(srcs) == 3 and all(s.startswith("data:image/png;base64,") for s in srcs)
    assert not re.search(r'(src|href)="https?://', text)


def test_second_card_trains_only_its_model(cards):
    assert set(cards["first"]["trained_runs"]) >= {"gru", "lstm", "transformer", "llama", "mamba"}
    assert cards["second"]["trained_runs"] == {"delta-rule": len(cards["new_rows"])} and cards["new_rows"]
    assert {r["config"]["model"] for r in cards["new_rows"]} == {"delta-rule"}


def test_card_index(cards):
    from seqgap.cli import main

    assert main(["card", "--index", str(cards["dir"])]) == 0
    text = (cards["dir"] / "index.html").read_text()
    assert "gru:tiny" in text and "delta-rule:tiny" in text
    md = (cards["dir"] / "index.md").read_text()
    assert len([line for line in md.splitlines() if line.startswith("| gru") or line.startswith("| delta")]) == 2


def test_match_params_within_ten_percent():
    from seqgap.studies.card import Subject, count_params, match_params

    saved = dict(registry._PLUGINS)
    try:
        registry.load_plugin(str(EXAMPLES / "gru.py"))
        for target in (20_000, 120_000):
            s, info = match_params(Subject("gru", "tiny", {}, "model"), [target], 16, 32)
            assert info["field"] == "d_model" and info["within_10pct"], info
            assert abs(count_params("gru", "tiny", s.options, 16, 32) - target) <= 0.1 * target
    finally:
        registry._PLUGINS.clear()
        registry._PLUGINS.update(saved)


def test_failed_check_is_one_line(tmp_path):
    bad = tmp_path / "bad_model.py"
    bad.write_text(
        "from dataclasses import dataclass\nimport torch\nfrom torch import nn\n"
        "from seqgap.models import SequenceModel, register_model\n"
        "@dataclass\nclass C:\n    d_model: int = 8\n"
        "@register_model('bad-rows', config=C)\nclass Bad(SequenceModel):\n"
        "    def __init__(self, config, vocab_size, max_len):\n"
        "        super().__init__(); self.config, self.vocab_size = config, vocab_size\n"
        "        self.e = nn.Embedding(vocab_size, vocab_size)\n"
        "    def forward(self, tokens):\n        return self.e(tokens).mean(1)\n")
    p = subprocess.run([sys.executable, "-m", "seqgap", "card", "--plugin", str(bad), "--model", "bad-rows",
                        "--battery", "tiny", "--store", str(tmp_path / "runs.sqlite"), "--out", str(tmp_path / "c")],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 2, p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and "fails check-model" in lines[0] and "shape" in lines[0], p.stderr
    assert not (tmp_path / "runs.sqlite").exists() or len(RunStore(str(tmp_path / "runs.sqlite"))) == 0


def test_report_of_a_store_and_of_a_folder(cards, tmp_path):
    from seqgap.cli import main

    out = tmp_path / "store.html"
    assert main(["report", cards["store"], "--out", str(out)]) == 0
    text = out.read_text()
    assert "<table>" in text and "delta-rule" in text and "<script" not in text
    # a card folder holds no summary.md: the report says so in one line
    assert main(["report", str(tmp_path / "missing")]) == 2
