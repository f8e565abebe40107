"""The documentation builds strictly (a broken link, a missing docstring of a
public name, or a generated table whose result file is missing fails it), and the
generated numbers committed in the README and every docs page (which GitHub and an
offline reader see) match their result files."""

from __future__ import annotations

import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_the_committed_numbers_of_every_page_come_from_their_files():
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
    site = tmp_path / "site"
    assert (site / "assets" / "mathjax" / "tex-mml-chtml.js").stat().st_size > 500_000
    assert list((site / "assets" / "mathjax" / "output" / "chtml" / "fonts").rglob("*.woff"))
    for page in site.rglob("*.html"):  # nothing a page needs comes from another host
        html = page.read_text()
        for host in ("unpkg.com", "cdn.jsdelivr", "fonts.googleapis", "polyfill.io"):
            assert host not in html, (page, host)
    reproducing = (ROOT / "docs" / "reproducing.md").read_text()
    assert "](figures/parity.png)" in reproducing  # a path GitHub and the site both resolve
    assert (site / "reproducing" / ".." / "figures" / "parity.png").resolve().exists()


def test_every_gen_block_has_a_generator():
    sys.path.insert(0, str(ROOT / "docs"))
    import generate

    pages = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    names = {m.group("name") for page in pages for m in generate.BLOCK.finditer(page.read_text())}
    assert names and names <= set(generate.TABLES), names - set(generate.TABLES)


def test_the_workflows_are_valid_and_run_what_ci_runs():
    """GitHub's workflows pass yamllint, CI calls .ci/run and the docs workflow builds
    strictly and deploys to Pages."""
    yaml = pytest.importorskip("yaml")
    workflows = ROOT / ".github" / "workflows"
    proc = subprocess.run([sys.executable, "-m", "yamllint", "-d",
                           "{extends: default, rules: {line-length: {max: 100}, "
                           "document-start: disable}}", str(workflows)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    ci = yaml.safe_load((workflows / "ci.yml").read_text())
    steps = [s.get("run", "") for job in ci["jobs"].values() for s in job["steps"]]
    assert "bash .ci/run" in steps and ci["jobs"]["test"]["timeout-minutes"] <= 90
    docs = yaml.safe_load((workflows / "docs.yml").read_text())
    runs = " ".join(s.get("run", "") for s in docs["jobs"]["build"]["steps"])
    assert "mkdocs build --strict" in runs
    assert any(s.get("uses", "").startswith("actions/deploy-pages")
               for s in docs["jobs"]["deploy"]["steps"])


def test_the_optima_named_in_prose_are_those_of_the_result_files():
    """Numbers typed into sentences outside generated blocks drift; the games'
    optima that reproducing.md names are checked against the files they come from."""
    import json

    text = (ROOT / "docs" / "reproducing.md").read_text()
    for phrase, path in (("our draw; J* = ", "stochastic_game/algorithms.json"),
                         ("25 steps, J* = ", "stochastic_game_paper/algorithms.json")):
        j_star = json.loads((ROOT / "benchmarks" / "results" / path).read_text())["meta"]["J_star"]
        assert f"{phrase}{j_star:.2f}" in text, (phrase, j_star)
