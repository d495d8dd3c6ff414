"""The README's Python snippets run as written (from a copy of the repository's configs)."""

import re
import shutil
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

ROOT = Path(__file__).resolve().parents[1]


def test_readme_python_blocks_run(tmp_path, monkeypatch):
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    assert len(blocks) >= 2
    shutil.copytree(ROOT / "configs", tmp_path / "configs")
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, "README.md", "exec"), namespace)  # noqa: S102
    assert (tmp_path / "runs" / "x" / "results.nc").exists()
    assert abs(namespace["opt"].rho - 29.91511460643) < 1e-9
    assert namespace["traj"].observed["loss"].shape == (4,)
    assert namespace["batch"].status.shape == (8,)
    assert namespace["again"].attrs["compile_seconds"] == 0.0  # same structure: no compilation
