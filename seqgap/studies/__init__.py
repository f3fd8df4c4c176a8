"""Studies: each file is one study with a CLI entry (``seqgap study NAME``).

A study module exposes ``NAME``, ``HELP``, ``add_arguments(parser)`` and
``main(args) -> int``, and optionally ``PRESET_NAMES`` (default ``PRESET_CHOICES``); list it in
``STUDY_MODULES`` to make it a subcommand.
"""
from __future__ import annotations

import importlib

# every study has these presets ("quick": a 2-core laptop; "paper": the published protocol); a study
# with more (retrieval-gap's "medium") lists its own in PRESET_NAMES
PRESET_CHOICES = ("quick", "paper")


def preset_names(study) -> tuple[str, ...]:
    return tuple(getattr(study, "PRESET_NAMES", PRESET_CHOICES))


STUDY_MODULES = [
    "seqgap.studies.sample_complexity",
    "seqgap.studies.sharing",
    "seqgap.studies.length_gen",
    "seqgap.studies.retrieval_gap",
    "seqgap.studies.induction_bias",
]


def study_parser(study):
    """A stand-alone parser of one study's options (with the shared ones), e.g. for its defaults."""
    import argparse

    from seqgap.options import shared_parser

    parser = argparse.ArgumentParser(prog=f"seqgap study {study.NAME}", parents=[shared_parser(preset_names(study))])
    study.add_arguments(parser)
    return parser


def add_study_parsers(sub) -> None:
    from seqgap.options import shared_parser

    p = sub.add_parser("study", help="run a study (sample-complexity, sharing, length-generalization, retrieval-gap)")
    study_sub = p.add_subparsers(dest="study", metavar="STUDY")
    for modname in STUDY_MODULES:
        try:
            mod = importlib.import_module(modname)
        except ModuleNotFoundError as e:
            if e.name == modname:  # not written yet
                continue
            raise
        sp = study_sub.add_parser(mod.NAME, help=mod.HELP, description=mod.HELP,
                                  parents=[shared_parser(preset_names(mod))])
        mod.add_arguments(sp)
        sp.set_defaults(func=mod.main)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])
