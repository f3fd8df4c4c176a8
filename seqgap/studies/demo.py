"""The main job (`seqgap demo` / `make demo`): a small end-to-end study with its report.

A few minutes on a 2-core laptop: N* of a Transformer and an LSTM on parity
under aligned CoT at two lengths (study E in miniature), then length
generalisation of the same models, then a Markdown report with figures in
``seqgap_demo/``.  Every run lands in the run store, so a second `seqgap demo`
reprints the report without training.
"""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from seqgap.config import TrainConfig
from seqgap.studies.sample_complexity import Cell, SearchSettings, search_cells

# The quick preset of study E, smaller still (see docs/studies.md for why the criterion is 1e-2).
DEMO_SETTINGS = SearchSettings(
    n_max=512, factor=4, max_steps=4, bisect="geometric", lrs=(3e-3, 1e-2), seeds=(0,),
    train=TrainConfig(steps=1000, eval_every=50, batch_size=64, success_loss=1e-2, patience_evals=6,
                      patience_min_frac=0.3),
)
DEMO_MODELS = {"transformer": "tiny", "lstm": "tiny"}
DEMO_LENGTHS = (4, 8)


def demo_cells() -> list[Cell]:
    return [Cell("modadd", {"m": 2, "format": "acot"}, L, "fixed", model, size)
            for model, size in DEMO_MODELS.items() for L in DEMO_LENGTHS]


def run_demo(out: str = "seqgap_demo", store_path: str | None = None, workers: int | None = None) -> int:
    from seqgap.report.state_tracking import write_length_gen_report, write_sample_complexity_report
    from seqgap.report.figures import relink_part
    from seqgap.studies.length_gen import run_cells

    out_dir = Path(out)
    store_path = store_path if store_path is not None else str(out_dir / "runs.sqlite")
    t0 = time.perf_counter()
    from seqgap.sweep.driver import log_line as log
    log(f"seqgap demo: N* of {', '.join(DEMO_MODELS)} on parity (ACoT) at L = {list(DEMO_LENGTHS)}, "
        f"then length generalisation; runs in {store_path}")
    results = [r for r in search_cells(demo_cells(), DEMO_SETTINGS, store_path, workers, log=log) if r is not None]
    md = write_sample_complexity_report(results, DEMO_SETTINGS, out_dir / "sample_complexity")

    lg_settings = dataclasses.replace(DEMO_SETTINGS, n_max=256)
    lg_cells = [Cell("modadd", {"m": 2, "format": "acot"}, 6, "uniform", model, size)
                for model, size in DEMO_MODELS.items()]
    lg = run_cells(lg_cells, lg_settings, store_path, workers, 300, log=log)
    md_lg = write_length_gen_report(lg, out_dir / "length_generalization")
    report = ["# seqgap demo", "", f"Wall time {time.perf_counter() - t0:.0f} s. Reports: "
              f"`{out_dir / 'sample_complexity' / 'summary.md'}`, `{out_dir / 'length_generalization' / 'summary.md'}`.",
              "", relink_part(md, "sample_complexity"), relink_part(md_lg, "length_generalization")]
    (out_dir / "README.md").write_text("\n".join(report))
    print("\n".join(report))
    return 0
