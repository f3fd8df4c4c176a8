"""The README's Python API example runs as written (with a throwaway store and a tiny budget)."""
import re
from pathlib import Path


def test_readme_python_api_block_runs():
    src = (Path(__file__).parent.parent / "README.md").read_text()
    block = re.search(r"## Python API\n\n```python\n(.*?)```", src, re.S).group(1)
    block = block.replace('RunStore("runs.sqlite")', 'RunStore(":memory:")').replace("steps=5000", "steps=10")
    ns: dict = {}
    exec(compile(block, "README.md", "exec"), ns)
    assert ns["result"].summary["steps"] == 10
    assert ns["batch"].inputs.shape[0] == 64
