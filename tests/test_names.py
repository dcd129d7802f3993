"""Every ``awp_lib.…`` named in the repository resolves, and nothing cites a file outside it."""
import importlib
import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
NAME = re.compile(r"\bawp_lib(?:\.[A-Za-z_][A-Za-z0-9_]*)+")
TEXT = (".py", ".ipynb", ".md", ".yaml", ".yml", ".toml", ".sh", ".cfg", ".txt")


def _tracked():
    out = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    return [REPO / p for p in out.split() if p.endswith(TEXT) or p == "Makefile"]


def _resolves(dotted: str) -> bool:
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        try:
            for attr in parts[i:]:
                obj = getattr(obj, attr)
        except AttributeError:
            return False
        return True
    return False


def test_every_awp_lib_name_resolves():
    bad = []
    for path in _tracked():
        for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            for name in NAME.findall(line):
                name = name.rstrip(".")
                if name.endswith((".py", ".ipynb", ".yaml")):  # a file path written with dots
                    continue
                if not _resolves(name):
                    bad.append(f"{path.relative_to(REPO)}:{n}: {name}")
    assert not bad, "names that point nowhere:\n" + "\n".join(sorted(set(bad)))


# the sibling folder of the checkout that holds the developers' notes (spelled in pieces, so
# that this test does not cite it)
OUTSIDE = ("../" + "shared", "shared" + "/reference")


def test_nothing_cites_a_file_outside_the_repository():
    bad = [f"{p.relative_to(REPO)}:{n}" for p in _tracked()
           for n, line in enumerate(p.read_text(errors="replace").splitlines(), 1)
           if any(o in line for o in OUTSIDE)]
    assert not bad, "citations of files outside the repository: " + ", ".join(bad)


def test_the_readme_is_a_front_door():
    """At most 220 lines; its measured table holds one row per thing measured, each dated."""
    text = (REPO / "README.md").read_text()
    assert len(text.splitlines()) <= 220
    measured = text.split("## Measured", 1)[1].split("\n## ", 1)[0]
    rows = [r for r in measured.splitlines() if r.startswith("| ") and not r.startswith("| what")]
    things = [r.split(" | ")[0] for r in rows]
    assert len(rows) >= 5 and len(things) == len(set(things)), things
    undated = [t for r, t in zip(rows, things) if not re.search(r"20\d\d-\d\d-\d\d|not measured", r)]
    assert not undated, undated
