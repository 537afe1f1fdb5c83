"""Assemble README.md and CHANGELOG.md from docs/sections/NN-*.md.

Each section file holds one README section; anything after a line ``<!-- changelog -->`` is that
capability's changelog entry. Run: ``python tools/assemble_readme.py``.
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MARK = "<!-- changelog -->"


def main() -> None:
    sections = sorted(p for p in (ROOT / "docs" / "sections").glob("[0-9][0-9]-*.md"))
    readme, changes = [], []
    for p in sections:
        text = p.read_text(encoding="utf-8")
        body, _, log = text.partition(MARK)
        readme.append(body.strip() + "\n")
        if log.strip():
            changes.append(log.strip() + "\n")
    (ROOT / "README.md").write_text("\n".join(readme), encoding="utf-8")
    head = "# Changelog\n\nAll notable changes to memlens. Units are bits unless a name says otherwise.\n\n"
    (ROOT / "CHANGELOG.md").write_text(
        head + "## 0.1.0 (unreleased)\n\n" + "\n".join(changes), encoding="utf-8"
    )
    print(f"README.md: {len(sections)} sections; CHANGELOG.md: {len(changes)} entries")


if __name__ == "__main__":
    main()
