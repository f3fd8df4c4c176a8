"""Studies: each file is one study with a CLI entry (``seqgap study NAME``).

A study module exposes ``NAME``, ``HELP``, ``add_arguments(parser)`` and
``main(args) -> int``; list it in ``STUDY_MODULES`` to make it a subcommand.
"""
from __future__ import annotations

import importlib

STUDY_MODULES = [
    "seqgap.studies.sample_complexity",
    "seqgap.studies.sharing",
    "seqgap.studies.length_gen",
    "seqgap.studies.retrieval_gap",
    "seqgap.studies.induction_bias",
]


def add_study_parsers(sub) -> None:
    p = sub.add_parser("study", help="run a study (sample-complexity, sharing, length-generalization, retrieval-gap)")
    study_sub = p.add_subparsers(dest="study", metavar="STUDY")
    for modname in STUDY_MODULES:
        try:
            mod = importlib.import_module(modname)
        except ModuleNotFoundError as e:
            if e.name == modname:  # not written yet
                continue
            raise
        sp = study_sub.add_parser(mod.NAME, help=mod.HELP, description=mod.HELP)
        mod.add_arguments(sp)
        sp.set_defaults(func=mod.main)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])
