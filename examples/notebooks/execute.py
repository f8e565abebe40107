"""Execute the notebooks at their real budgets and commit them with their outputs.

    python examples/notebooks/execute.py            # all six
    python examples/notebooks/execute.py 02 04      # some, by number

Each notebook runs headless in a fresh Jupyter kernel from its own folder, and is
written back with its outputs (so GitHub shows the figures) and, in its metadata
(``dpo_jax``), the SHA-256 of its code cells, the date, the machine and the wall
time. ``tests/test_notebooks.py`` fails when a notebook's code no longer matches
the code its outputs were made with: run this script again after changing one.
"""

from __future__ import annotations

import datetime
import hashlib
import os
import pathlib
import platform
import sys
import time

HERE = pathlib.Path(__file__).resolve().parent


def code_digest(nb: object) -> str:
    """SHA-256 over the sources of a notebook's code cells, in order."""
    digest = hashlib.sha256()
    for cell in nb.cells:
        if cell.cell_type == "code":
            digest.update(cell.source.encode() + b"\n\0")
    return digest.hexdigest()


def execute(path: pathlib.Path) -> float:
    """Run one notebook at its real budget and write it back with its outputs;
    returns the wall time."""
    import nbclient
    import nbformat

    nb = nbformat.read(path, as_version=4)
    for index, cell in enumerate(nb.cells):  # nbformat 4.5 wants an id on every cell
        digest = hashlib.sha256(cell.source.encode()).hexdigest()[:8]
        cell.setdefault("id", f"cell-{index:02d}-{digest}")
    os.environ.pop("DPO_JAX_NOTEBOOK_TINY", None)  # the real budget
    os.environ["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
    start = time.perf_counter()
    nbclient.NotebookClient(nb, timeout=3600, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}}).execute()
    seconds = time.perf_counter() - start
    nb.metadata["dpo_jax"] = {
        "code_sha256": code_digest(nb), "executed": datetime.date.today().isoformat(),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores",
        "wall_seconds": round(seconds, 1),
        "command": f"python examples/notebooks/execute.py {path.name[:2]}"}
    nbformat.write(nb, path)
    return seconds


def main(argv: list[str]) -> int:
    paths = sorted(HERE.glob("*.ipynb"))
    if argv:
        paths = [p for p in paths if p.name[:2] in argv]
        if not paths:
            print(f"no notebook numbered {argv}", file=sys.stderr)
            return 2
    for path in paths:
        seconds = execute(path)
        print(f"{path.name}: executed in {seconds:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
