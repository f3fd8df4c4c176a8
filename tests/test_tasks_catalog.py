"""The task catalog (names -> classes), class-level task descriptions, min_length, and the import graph."""
import ast
from pathlib import Path

import pytest

from seqgap.errors import SeqgapError
from seqgap.tasks import catalog
from seqgap.tasks.base import FAMILIES, Task, Vocab
from seqgap.tasks.catalog import BUILTIN, TASK_HELP, TASKS, make_task, register_task

ROOT = Path(__file__).resolve().parents[1]
E_TASKS = {"modadd", "parity", "permutation"}
W_TASKS = {"index", "ar", "mqar", "mqar-zoology", "cgram", "counting", "istree"}


def test_builtin_table():
    assert set(BUILTIN) == E_TASKS | W_TASKS
    for name, cls in BUILTIN.items():
        assert cls.name == name and TASKS[name] is cls
        assert TASK_HELP[name] == cls.help and cls.help
        assert cls.family in FAMILIES
        assert (cls.family == "state-tracking") == (name in E_TASKS)
        assert make_task(name).describe()["name"] == name


def test_size_params():
    assert {n: c.size_param for n, c in BUILTIN.items() if c.size_param} == {"modadd": "m", "permutation": "k"}
    assert TASKS["modadd"].size_range == (2, None) and TASKS["permutation"].size_range == (3, 6)
    assert TASKS["parity"].size_param is None  # parity fixes m = 2
    mod, perm = TASKS["modadd"], TASKS["permutation"]
    assert mod.size_of({"m": 7, "format": "cot"}) == 7 and mod.size_of({}) == 5  # the constructor's default
    assert perm.size_of({"k": "4"}) == 4 and perm.size_of({"group": "A"}) == 5
    assert TASKS["istree"].size_of({"max_nodes": 8}) is None
    assert mod.check_size(2) == 2 and perm.check_size(6) == 6
    for cls, bad in ((mod, 1), (mod, "x"), (perm, 2), (perm, 7), (perm, 4.5)):
        with pytest.raises(SeqgapError) as e:
            cls.check_size(bad)
        assert "\n" not in str(e.value)
    with pytest.raises(SeqgapError, match="m must be >= 2, got 1"):
        make_task("modadd", m=1)  # the constructor uses the same check
    with pytest.raises(SeqgapError, match=r"k must be in 3\.\.6, got 7"):
        make_task("permutation", k=7)
    assert make_task("modadd", m=2).m == 2 and make_task("permutation", k=3).k == 3  # the range ends are allowed


@pytest.mark.parametrize("name,floor", [("modadd", 2), ("parity", 2), ("permutation", 2), ("index", 1), ("ar", 1),
                                        ("mqar", 1), ("counting", 1), ("istree", 4)])
def test_min_length_is_a_constructor_option(name, floor):
    assert make_task(name).min_length == floor
    task = make_task(name, min_length=floor + 2)
    assert task.min_length == floor + 2
    assert type(task).min_length == floor  # the class keeps the family's own minimum
    assert make_task(name, min_length=str(floor + 1)).min_length == floor + 1  # CLI strings
    for bad in (floor - 1, "three"):
        with pytest.raises(SeqgapError) as e:
            make_task(name, min_length=bad)
        assert "min_length" in str(e.value) and "\n" not in str(e.value)


def test_cgram_min_length_follows_c():
    assert make_task("cgram", c=4).min_length == 4
    assert make_task("cgram", c=4, min_length=6).min_length == 6
    with pytest.raises(SeqgapError, match="min_length must be >= 4"):
        make_task("cgram", c=4, min_length=3)


def test_min_length_limits_the_lengths_drawn():
    from seqgap.tasks.dataset import build_splits

    s = build_splits(make_task("modadd", m=3, min_length=4), 6, "uniform", 100, seed=0)
    assert s.lengths == (4, 5, 6) and {len(p) for p in s.train + s.val} == {4, 5, 6}


def test_unknown_task_and_bad_options():
    with pytest.raises(SeqgapError, match="unknown task 'nope'"):
        make_task("nope")
    with pytest.raises(SeqgapError, match="task modadd"):
        make_task("modadd", q=3)
    assert make_task("modadd", m=None).m == 5  # None = default


class Echo(Task):
    """Echo: a toy plugin task."""

    family = "retrieval"

    def __init__(self, min_length=None):
        super().__init__(min_length)
        self.vocab = Vocab(["[PAD]", "a"])

    def sample_problem(self, rng, length):
        return (0,) * length

    def encode(self, problem):
        raise NotImplementedError

    @property
    def chance_accuracy(self):
        return 1.0

    def max_tokens(self, length):
        return length


def test_register_plugin_and_refuse_builtin_names():
    try:
        cls = register_task("echo-plugin")(Echo)
        assert TASKS["echo-plugin"] is cls and cls.name == "echo-plugin"
        assert TASK_HELP["echo-plugin"] == "Echo: a toy plugin task."
        assert make_task("echo-plugin", min_length=3).min_length == 3
        assert "echo-plugin" not in BUILTIN
        for name in BUILTIN:
            with pytest.raises(SeqgapError) as e:
                register_task(name)
            assert "built-in" in str(e.value) and "\n" not in str(e.value)
        assert TASKS["modadd"] is BUILTIN["modadd"]
    finally:
        TASKS.pop("echo-plugin", None)
        TASK_HELP.pop("echo-plugin", None)


# ---- the import graph: tasks never import the catalog, the tool never imports the task -------------


def imports_of(path):
    tree = ast.parse(path.read_text())
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
    return out


def test_no_import_cycles_in_tasks():
    tasks_dir = ROOT / "seqgap" / "tasks"
    for path in tasks_dir.glob("*.py"):
        mods = imports_of(path)
        assert not any(m.startswith("seqgap.training") or m.startswith("seqgap.studies") for m in mods), path
        if path.name not in ("catalog.py", "__init__.py"):
            assert "seqgap.tasks.catalog" not in mods and "seqgap.tasks" not in mods, path
    assert not any(m.startswith("seqgap.tasks.istree") for m in imports_of(tasks_dir / "retrieval_tool.py"))
    assert not any(m.startswith("seqgap.tasks") for m in imports_of(tasks_dir / "base.py"))
    generate = imports_of(ROOT / "seqgap" / "training" / "generate.py")
    assert not any(m.startswith("seqgap.tasks") for m in generate)
    assert not (ROOT / "seqgap" / "training" / "retrieval_tool.py").exists()
    assert catalog.make_task is make_task
