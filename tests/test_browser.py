"""The gap card and a study report open in a real headless Chromium (Debian's ``chromium``, driven
by Playwright for Python): every image loads (naturalWidth > 0), the console shows no errors, the
page makes no network request, and a screenshot is kept under ``test-artifacts/`` (git-ignored).

``make test`` installs what this needs (``scripts/browser_deps.sh``: apt as root; playwright is in
the ``test`` extra); where no browser can be installed the test is skipped and says why."""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = os.environ.get("SEQGAP_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def _skip(reason: str):
    import warnings

    warnings.warn(f"browser test skipped: {reason}")  # listed in pytest's warnings summary, even with -q
    pytest.skip(reason)


def _browser_or_skip():
    try:
        from playwright.sync_api import sync_playwright  # noqa: F401
    except ImportError:
        _skip("playwright is not installed (pip install -e .[test]; scripts/browser_deps.sh)")
    if not Path(CHROMIUM).exists():
        _skip(f"no Chromium at {CHROMIUM} (scripts/browser_deps.sh installs Debian's chromium as root)")


def _open(html_file: Path, shot: Path) -> dict:
    """Open ``html_file``; (images, naturalWidths, console errors, requests other than the file itself)."""
    from playwright.sync_api import sync_playwright

    errors, requests = [], []
    with tempfile.TemporaryDirectory() as profile, sync_playwright() as p:
        ctx = p.chromium.launch_persistent_context(profile, executable_path=CHROMIUM, args=ARGS, headless=True,
                                                   viewport={"width": 1280, "height": 900})
        try:
            page = ctx.new_page()
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("request", lambda r: requests.append(r.url))
            page.goto(html_file.resolve().as_uri(), wait_until="load")
            page.wait_for_function("Array.from(document.images).every(i => i.complete)", timeout=15000)
            widths = page.evaluate("Array.from(document.images).map(i => i.naturalWidth)")
            title = page.title()
            shot.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(shot), full_page=True)
        finally:
            ctx.close()
    other = [u for u in requests if not u.startswith("file://") and not u.startswith("data:")]
    return {"widths": widths, "errors": errors, "requests": other, "title": title}


@pytest.fixture(scope="module")
def tiny_card(tmp_path_factory):
    _browser_or_skip()
    from seqgap.studies.card import make_card

    d = tmp_path_factory.mktemp("card")
    make_card("lstm", battery_name="tiny", store_path=str(d / "runs.sqlite"), out=d / "lstm", workers=1,
              log=lambda s: None)
    return d


def test_card_opens_in_chromium(tiny_card):
    got = _open(tiny_card / "lstm" / "card.html", ARTIFACTS / "card.png")
    assert "gap card" in got["title"]
    assert len(got["widths"]) == 3 and all(w > 0 for w in got["widths"]), got["widths"]
    assert got["errors"] == [], got["errors"]
    assert got["requests"] == [], got["requests"]
    assert (ARTIFACTS / "card.png").stat().st_size > 10_000


def test_report_opens_in_chromium(tmp_path):
    """A study's output folder rendered by `seqgap report` (a retrieval-gap report written from rows)."""
    _browser_or_skip()
    from seqgap.cli import main
    from seqgap.report.retrieval import write_retrieval_gap_report

    recs = [{"task": "mqar", "format": "vanilla", "n": n, "model": m, "size": "tiny", "model_options": {},
             "recurrent": m != "llama", "ok": True, "cached": False, "steps": 100, "samples_seen": 3200,
             "seconds": 1.0, "n_params": 50_000, "n_trainable_params": 50_000, "state_floats": 256,
             "state_per_token": m == "llama", "state_bits": 8192, "val_loss": 1.0, "best_val_loss": 1.0,
             "val_token_acc": acc, "val_seq_acc": acc, "val_final_acc": acc, "n_val": 100, "chance": 1 / 64,
             "acc": acc, "acc_n": 100 * n, "acc_scores": "per query, teacher-forced"}
            for m, accs in (("llama", (1.0, 0.9)), ("lstm", (0.6, 0.3))) for n, acc in zip((2, 4), accs)]
    out = tmp_path / "retrieval_gap_quick"
    write_retrieval_gap_report(recs, {"preset": "quick", "threshold": 0.9}, out)
    assert main(["report", str(out)]) == 0
    got = _open(out / "report.html", ARTIFACTS / "report.png")
    assert got["widths"] and all(w > 0 for w in got["widths"]), got["widths"]
    assert got["errors"] == [], got["errors"]
    assert got["requests"] == [], got["requests"]
