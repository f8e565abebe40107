"""The documentation builds strictly (a broken link, a missing docstring of a
public name, or a generated table whose result file is missing fails it) and the
README's generated numbers match their result files."""

from __future__ import annotations

import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_the_readme_numbers_come_from_their_files():
    proc = subprocess.run([sys.executable, str(ROOT / "docs" / "generate.py"), "--check"],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]


def test_the_site_builds_strictly(tmp_path):
    pytest.importorskip("mkdocs")
    pytest.importorskip("mkdocstrings")
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir",
                           str(tmp_path / "site")], capture_output=True, text=True, cwd=ROOT,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-5000:]
    assert (tmp_path / "site" / "index.html").exists()
    api = (tmp_path / "site" / "api" / "core" / "index.html").read_text()
    assert "adapt_betas" in api  # the reference is generated from the docstrings


def test_every_gen_block_has_a_generator():
    sys.path.insert(0, str(ROOT / "docs"))
    import generate

    pages = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    names = {m.group("name") for page in pages for m in generate.BLOCK.finditer(page.read_text())}
    assert names and names <= set(generate.TABLES), names - set(generate.TABLES)
