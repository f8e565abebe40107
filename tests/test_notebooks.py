"""The notebooks under ``examples/notebooks`` run headless in a Jupyter kernel at a
tiny budget (``DPO_JAX_NOTEBOOK_TINY=1``), and what a notebook user sees reaches the
notebook: the printed progress and results in the cells' outputs, figures as inline
images."""

from __future__ import annotations

import os
import pathlib

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NOTEBOOKS = sorted((pathlib.Path(__file__).parents[1] / "examples" / "notebooks").glob("*.ipynb"))


def execute(path: pathlib.Path, tmp_path: pathlib.Path) -> object:
    nb = nbformat.read(path, as_version=4)
    env = {"DPO_JAX_NOTEBOOK_TINY": "1", "MPLBACKEND": "module://matplotlib_inline.backend_inline"}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # the kernel inherits this process's environment
    try:
        client = nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                                         resources={"metadata": {"path": str(tmp_path)}})
        client.execute()
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return nb


def outputs(nb: object) -> tuple[str, int]:
    """All text the cells printed or displayed, and the number of inline PNGs."""
    text, images = [], 0
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream":
                text.append(out.get("text", ""))
            data = out.get("data", {})
            text.append(data.get("text/plain", ""))
            images += "image/png" in data
    return "".join(text), images


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_and_its_output_reaches_the_notebook(path, tmp_path):
    nb = execute(path, tmp_path)
    text, images = outputs(nb)
    assert images >= 1, f"{path.name}: no inline figure"
    if path.stem.startswith(("01", "02", "03", "05")):  # they train: progress and summary
        assert "uniform random policy" in text and "update" in text, text[-2000:]
        assert "final return" in text
    if path.stem.startswith("04"):
        assert "bound <= truth in 100%" in text


def test_there_are_six_notebooks():
    assert [p.stem[:2] for p in NOTEBOOKS] == ["01", "02", "03", "04", "05", "06"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_the_committed_outputs_were_made_by_the_committed_code(path):
    """Each notebook is committed executed at its real budget
    (``examples/notebooks/execute.py``): its outputs belong to its current code, it
    shows a figure, and no cell printed a warning."""
    import sys

    sys.path.insert(0, str(path.parent))
    from execute import code_digest

    nb = nbformat.read(path, as_version=4)
    meta = nb.metadata.get("dpo_jax", {})
    assert meta.get("code_sha256") == code_digest(nb), (
        f"{path.name}: its code changed after its outputs were made: run "
        f"python examples/notebooks/execute.py {path.name[:2]}")
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.get("execution_count") for c in code), f"{path.name}: a cell never ran"
    _, images = outputs(nb)
    assert images >= 1, f"{path.name}: no figure in the committed outputs"
    for cell in code:
        for out in cell.get("outputs", []):
            text = out.get("text", "") if out.get("name") == "stderr" else ""
            assert "Warning" not in text, (path.name, text[:500])
            assert out.get("output_type") != "error", (path.name, out.get("ename"))
