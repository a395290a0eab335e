"""Point ReFace at another repository (a fork): ``python tools/set_repository.py <URL>``.

The URL lives in pyproject.toml (``[project.urls] Repository``); the notebooks' Colab cell
and the README's Colab badges repeat it, and the tests check that all agree. This rewrites
all of them (then commit).
"""
from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main(url: str) -> None:
    url = url.rstrip("/").removesuffix(".git")
    if not re.fullmatch(r"https://github\.com/[\w.-]+/[\w.-]+", url):
        raise SystemExit(f"expected https://github.com/<owner>/<name>, got {url!r}")
    pyproject = REPO / "pyproject.toml"
    old = tomllib.loads(pyproject.read_text())["project"]["urls"]["Repository"]
    old_slug, new_slug = old.removeprefix("https://github.com/"), url.removeprefix("https://github.com/")
    pyproject.write_text(pyproject.read_text().replace(f'Repository = "{old}"', f'Repository = "{url}"'))
    readme = REPO / "README.md"
    readme.write_text(readme.read_text().replace(f"colab.research.google.com/github/{old_slug}/",
                                                 f"colab.research.google.com/github/{new_slug}/"))
    sources = sorted((REPO / "notebooks").glob("*.py"))
    for source in sources:
        source.write_text(source.read_text().replace(f'"{old}"', f'"{url}"'))
    # Each .ipynb follows its edited pair.
    subprocess.run([sys.executable, "-m", "jupytext", "--sync", "--quiet", *map(str, sources)], check=True)
    print(f"repository: {old} -> {url}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    main(sys.argv[1])
