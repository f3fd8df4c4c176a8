"""Property tests of everything a user can type: the ``seqgap train`` option parser,
``RunConfig.from_dict`` + ``validate``, model and task option parsing, and the retrieval tool.
Each input gives a result or a one-line error (``SeqgapError``), never another exception,
a traceback or a hang.  The default suite runs a few dozen examples each; ``-m slow`` many more.
(The store reader has its own: tests/test_store_property.py.)"""
import contextlib
import dataclasses
import io
import os
import signal

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from seqgap.cli import build_parser, main  # noqa: E402
from seqgap.config import RunConfig, TrainConfig  # noqa: E402
from seqgap.errors import SeqgapError  # noqa: E402
from seqgap.models.registry import BUILTIN_MODELS, model_config  # noqa: E402
from seqgap.options import typed_model_options  # noqa: E402
from seqgap.tasks.catalog import BUILTIN as BUILTIN_TASKS  # noqa: E402
from seqgap.tasks.catalog import make_task  # noqa: E402

FAST = settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
SLOW = settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))


@contextlib.contextmanager
def time_limit(seconds: int):
    """Fail (instead of hanging) when the body runs longer than ``seconds``."""
    def on_alarm(signum, frame):
        raise TimeoutError(f"no answer within {seconds} s (a hang)")

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


# ---- values a hostile user types -------------------------------------------------------------
# Numbers are small (a quick run when valid) or beyond every bound (10**11 and up: steps, samples,
# lengths, vocabulary sizes and model widths are all bounded below that), so no valid example
# asks for a long run.
_small_int = st.integers(-3, 6).map(str)
_huge_int = st.integers(11, 40).map(lambda e: str(10 ** e))
_float = st.one_of(st.sampled_from(["nan", "inf", "-inf", "-0.0", "1e300", "1e-300", "1e3", "2.5", "0x2", "1_0"]),
                   st.floats(-5, 5, allow_nan=False).map(repr))
_text = st.text(max_size=12)
_value = st.one_of(_small_int, _small_int, _huge_int, _float, _text, st.just(""), st.sampled_from(
    ["true", "no", "none", "null", "cpu", "cuda", "cuda:99", "meta", "mps", "cpu:1", "2,3", "3,,x", "S", "A",
     "acot", "cot", "outcome", "lstm", "transformer", "mamba", "tiny", "uniform", "short-to-long"]))

_model_keys = sorted({f.name for spec in BUILTIN_MODELS.values() for f in dataclasses.fields(spec.config)}
                     | {"max_len", "vocab_size", "size", "config", "name"})
_task_keys = ["m", "k", "group", "format", "min_length", "alphabet", "values", "num_queries", "max_length", "c",
              "threshold", "distribution", "max_nodes", "n_max"]
_set_keys = ([f"train.{f.name}" for f in dataclasses.fields(TrainConfig) if f.name not in ("compile", "checkpoint_dir")]
             + [f.name for f in dataclasses.fields(RunConfig) if f.name not in ("train",)]
             + [f"task_params.{k}" for k in _task_keys] + [f"model_options.{k}" for k in _model_keys])
_kv = st.one_of(st.tuples(st.sampled_from(_model_keys + _task_keys) | _text, _value).map(lambda kv: f"{kv[0]}={kv[1]}"),
                _text)


def _train_flags():
    sub = next(a for a in build_parser()._actions if a.__class__.__name__ == "_SubParsersAction")
    flags = {}
    for a in sub.choices["train"]._actions:
        # placement that writes files or takes minutes is not fuzzed here: the store, checkpoints,
        # plugins (imports), torch.compile, --help
        if not a.option_strings or a.option_strings[0] in ("-h", "--store", "--checkpoint-dir", "--plugin",
                                                           "--compile", "--no-progress"):
            continue
        flags[a.option_strings[-1] if a.option_strings[0] == "--length" else a.option_strings[0]] = a.nargs == 0
    return flags


_FLAGS = _train_flags()
_VALUE_FOR = {"--task": st.sampled_from(sorted(BUILTIN_TASKS)) | _text,
              "--model": st.sampled_from(sorted(BUILTIN_MODELS)) | _text,
              "--set": st.tuples(st.sampled_from(_set_keys) | _text, _value).map(lambda kv: f"{kv[0]}={kv[1]}"),
              "--model-opt": _kv, "--task-opt": _kv}


@st.composite
def _argv(draw):
    out = []
    for flag in draw(st.lists(st.sampled_from(sorted(_FLAGS)), min_size=1, max_size=5)):
        out.append(flag)
        if not _FLAGS[flag]:
            out.append(draw(_VALUE_FOR.get(flag, _value)))
    return out


def _run_cli(argv, store):
    """``seqgap train`` in-process on tiny budgets (the fuzzed flags come after and win):
    (exit code, stderr)."""
    base = ["train", "--store", store, "--no-progress", "--steps", "1", "--n-train", "4", "-L", "3",
            "--eval-every", "1", "--batch-size", "2", "--n-eval", "4"]
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), time_limit(60):
        try:
            rc = main(base + argv)
        except SystemExit as e:  # argparse: a bad flag value
            rc = e.code
    return rc, err.getvalue()


def _check_cli(argv, tmp_path):
    cwd = os.getcwd()
    os.chdir(tmp_path)  # nothing a fuzzed option writes lands in the project
    try:
        rc, err = _run_cli(argv, str(tmp_path / "runs.sqlite"))
    finally:
        os.chdir(cwd)
    assert "Traceback" not in err, (argv, err)
    assert rc in (0, 2), (argv, rc, err)
    if rc == 2:
        errors = [line for line in err.splitlines() if "error:" in line]
        assert len(errors) == 1 and errors[0].startswith("seqgap"), (argv, err)


@FAST
@given(argv=_argv())
def test_cli_train_options_give_a_run_or_one_line(argv, tmp_path_factory):
    _check_cli(argv, tmp_path_factory.mktemp("cli"))


@pytest.mark.slow
@SLOW
@given(argv=_argv())
def test_cli_train_options_give_a_run_or_one_line_many(argv, tmp_path_factory):
    _check_cli(argv, tmp_path_factory.mktemp("cli"))


# ---- RunConfig.from_dict + validate ------------------------------------------------------------

_json = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=12)
_run_fields = [f.name for f in dataclasses.fields(RunConfig)]
_train_fields = [f.name for f in dataclasses.fields(TrainConfig)]
_plausible = st.one_of(_json, st.integers(-3, 10), st.sampled_from(
    ["modadd", "lstm", "fixed", "adamw", "cosine", "cpu", "tiny", 1e-3, 0.5, float("nan"), float("inf"), 10**30]))
_train_dict = st.dictionaries(st.sampled_from(_train_fields) | st.text(max_size=6), _plausible, max_size=6)
_config_dict = st.dictionaries(
    st.sampled_from(_run_fields) | st.text(max_size=6),
    st.one_of(_plausible, _train_dict, st.lists(st.integers(-3, 10**6), max_size=3)), max_size=8)


def _check_from_dict(d):
    try:
        cfg = RunConfig.from_dict(d)
        cfg.validate()
        cfg.hash()
    except SeqgapError as e:
        assert "\n" not in str(e).strip(), str(e)


@FAST
@given(d=_config_dict)
def test_run_config_from_dict_gives_a_config_or_one_line(d):
    _check_from_dict(d)


@pytest.mark.slow
@SLOW
@given(d=_config_dict)
def test_run_config_from_dict_gives_a_config_or_one_line_many(d):
    _check_from_dict(d)


# ---- model and task options ----------------------------------------------------------------

_model_opts = st.dictionaries(st.sampled_from(_model_keys) | st.text(max_size=6), _value, max_size=4)


def _check_model_options(model, size, options):
    try:
        typed = typed_model_options(model, options)
        model_config(model, size, typed)
    except SeqgapError as e:
        assert "\n" not in str(e).strip(), str(e)


@FAST
@given(model=st.sampled_from(sorted(BUILTIN_MODELS)) | _text,
       size=st.none() | st.sampled_from(["tiny", "small", "paper", "bogus"]), options=_model_opts)
def test_model_options_give_a_config_or_one_line(model, size, options):
    _check_model_options(model, size, options)


_task_value = st.one_of(_value, st.integers(-3, 70), st.integers(11, 40).map(lambda e: 10 ** e), st.floats(),
                        st.booleans(), st.none())
_task_params = st.dictionaries(st.sampled_from(_task_keys) | st.text(max_size=6), _task_value, max_size=4)


def _check_task(name, params, lengths):
    try:
        task = make_task(name, **params)
    except SeqgapError as e:
        assert "\n" not in str(e).strip(), str(e)
        return
    for n in lengths:  # counting problems never materialises a huge integer (time_limit)
        with time_limit(10):
            try:
                task.check_length(n)
                count = task.num_problems(n)
                assert count is None or count >= 0
                assert task.max_tokens(n) > 0
            except SeqgapError as e:
                assert "\n" not in str(e).strip(), str(e)


@FAST
@given(name=st.sampled_from(sorted(BUILTIN_TASKS)) | _text, params=_task_params,
       lengths=st.lists(st.integers(0, 100_000), max_size=3))
def test_task_options_give_a_task_or_one_line(name, params, lengths):
    _check_task(name, params, lengths)


@pytest.mark.slow
@SLOW
@given(name=st.sampled_from(sorted(BUILTIN_TASKS)) | _text, params=_task_params,
       lengths=st.lists(st.integers(0, 100_000), max_size=3))
def test_task_options_give_a_task_or_one_line_many(name, params, lengths):
    _check_task(name, params, lengths)


# ---- the retrieval tool ----------------------------------------------------------------------

from seqgap.tasks.istree import IsTree  # noqa: E402
from seqgap.tasks.retrieval_tool import ENDSEARCH, FAILED, STARTSEARCH, RetrievalTool  # noqa: E402

_TASK = IsTree(format="rag", max_nodes=12)
_TOOL = RetrievalTool(_TASK)
_V = _TASK.vocab
_special = [_V.id(s) for s in (STARTSEARCH, ENDSEARCH, FAILED, "-", "~", "[BOS]", "[EOS]")]
_token = st.one_of(st.integers(0, len(_V) - 1), st.sampled_from(_special))
# contexts ending in a query (the tool's work) as well as arbitrary ones
_context = st.one_of(
    st.lists(_token, max_size=60),
    st.tuples(st.lists(_token, max_size=60), st.lists(_token, max_size=4)).map(
        lambda t: t[0] + [_V.id(STARTSEARCH)] + t[1] + [_V.id(ENDSEARCH)]))


def _check_tool(context, as_array):
    ctx = np.asarray(context, dtype=np.int64) if as_array else context
    out = _TOOL(ctx)
    assert out is None or (isinstance(out, list) and len(out) == 1 and 0 <= int(out[0]) < len(_V)), out
    if context and context[-1] == _V.id(ENDSEARCH):
        assert out is not None  # a closed query is always answered: a result or [FAILED]


@FAST
@given(context=_context, as_array=st.booleans())
def test_retrieval_tool_answers_or_fails(context, as_array):
    _check_tool(context, as_array)


@pytest.mark.slow
@settings(max_examples=5000, deadline=None, suppress_health_check=list(HealthCheck))
@given(context=_context, as_array=st.booleans())
def test_retrieval_tool_answers_or_fails_many(context, as_array):
    _check_tool(context, as_array)
