"""The notebooks' Markdown renders as written: no stray list items, links that resolve, code boxes.

These are mistakes a reader sees in JupyterLab but no cell execution catches:

* a wrapped line that starts with a number and a dot ("1945. doi:...") is read
  as a numbered-list item and shows as a stray, outdented line;
* JupyterLab serves only the folder it was started in (the README says
  ``jupyter lab notebooks/``), so a link to ``../README.md`` answers 404, and
  Colab has no repository folder at all: links must stay inside ``notebooks/``
  or be absolute;
* inside ``<details>``, Markdown (a fenced code block, a list) is only read as
  Markdown after a blank line, so ``<summary>`` needs one after it; without it
  a solution's code renders without its code box and runs into the prose.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))
NUMBERED_ITEM = re.compile(r"^\s*(\d+)[.)]\s")
FENCE = re.compile(r"^\s*(```|~~~)")
LINK = re.compile(r"\]\(([^)\s]+)\)")


def markdown_cells(path: Path) -> list[tuple[int, str]]:
    """(cell index, source) of every Markdown cell of a notebook."""
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    return [(index, "".join(cell["source"])) for index, cell in enumerate(cells) if cell["cell_type"] == "markdown"]


def prose_lines(source: str) -> list[str]:
    """The lines of a Markdown cell outside fenced code blocks (code is shown as typed)."""
    lines, in_code = [], False
    for line in source.splitlines():
        if FENCE.match(line):
            in_code = not in_code
            lines.append("")
        else:
            lines.append("" if in_code else line)
    return lines


def stray_numbered_items(source: str) -> list[str]:
    """Lines read as numbered-list items that do not continue a list starting at 1.

    A real numbered list starts at 1 and counts up; "1945." or "2012." at the start
    of a wrapped reference line does neither.
    """
    stray, expected = [], None
    for line in prose_lines(source):
        match = NUMBERED_ITEM.match(line)
        if not match:
            continue
        number = int(match.group(1))
        if number == 1 or number == expected:
            expected = number + 1
        else:
            stray.append(line)
    return stray


def test_stray_numbered_items_are_found():
    reference = "- L. R. Dice. *Measures.* Ecology 26(3),\n  1945. [doi:10.2307/1932409](https://doi.org/x)."
    assert stray_numbered_items(reference) == ["  1945. [doi:10.2307/1932409](https://doi.org/x)."]
    real_list = "Four things:\n\n1. **One.** text\n   more text\n2. **Two.**\n3. Three"
    assert stray_numbered_items(real_list) == []
    assert stray_numbered_items("```\n2012. inside code is fine\n```") == []


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.name)
def test_no_line_renders_as_a_stray_list_item(path):
    stray = [(index, line) for index, source in markdown_cells(path) for line in stray_numbered_items(source)]
    assert stray == [], f"{path.name}: reword or escape (1945\\.) these lines: {stray}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.name)
def test_links_resolve_from_the_notebooks_folder(path):
    broken = []
    for index, source in markdown_cells(path):
        for target in LINK.findall("\n".join(prose_lines(source))):
            if re.match(r"^(https?:|mailto:|#)", target):
                continue
            local = target.split("#")[0]
            if local.startswith("/") or ".." in Path(local).parts or not (path.parent / local).exists():
                broken.append((index, target))
    assert broken == [], f"{path.name}: links outside notebooks/ or to missing files: {broken}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.name)
def test_summaries_are_followed_by_a_blank_line(path):
    cramped = []
    for index, source in markdown_cells(path):
        lines = source.splitlines()
        for number, line in enumerate(lines):
            if line.rstrip().endswith("</summary>") and number + 1 < len(lines) and lines[number + 1].strip():
                cramped.append((index, "no blank line after", line))
    assert cramped == [], f"{path.name}: {cramped}"
