"""Find the figures that the course's prose quotes and compare them with the files they come from.

The README, ``results/README.md`` and the notebooks' Markdown quote measured
results: scores, training times, speed ratios. Typed by hand, such a figure
drifts unnoticed when a result is remeasured or a sentence is edited. The
registry in ``tests/test_quoted_numbers.py`` says where each figure stands in
the prose and which value in which JSON file it rounds; the functions here find
the figure and compare. The prose itself stays plain text: no markers.

Two kinds of entries:

* ``Quote``: a figure inside a sentence, found by the words around it
  (``"F1 {} and AUC-ROC"``; ``{}`` stands for the number, and line breaks or
  repeated spaces in the Markdown do not matter);
* ``TableRow``: one row of a Markdown table, found by the section heading above
  the table and the row's first cell. Every other cell of that row that holds a
  number must be in the entry, and every row of a checked table must have an
  entry (``uncovered_table_cells``), so a table cannot gain an unchecked figure.
  A cell is a ``Measured`` figure (with the words around it, "{} min"), a
  ``Figures`` cell holding several, or fixed words for a setting ("1x H200").

A figure matches when the prose shows the stored value rounded to the entry's
number of decimals, no more and no fewer: rounding a rounded value (0.98146 ->
0.9815 -> 0.982) is caught.
"""
from __future__ import annotations

import ast
import functools
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

#: A number as the prose writes it: optional sign, digits with thousands commas, decimals.
NUMBER = r"[+-]?\d[\d,]*(?:\.\d+)?"


@functools.lru_cache(maxsize=None)
def read_json(path: Path):
    """A JSON file, read once per test run (the checker asks for the same files hundreds of times)."""
    return json.loads(path.read_text())


@dataclass(frozen=True)
class Sources:
    """Where the measured values are read from: a repository checkout (a copy, in the checker's own tests)."""

    repository: Path

    def result(self, name: str) -> dict:
        """One stored result, by the name ``retina_lib.course_results.load_result`` knows it by."""
        return read_json(self.repository / "retina_lib" / "course_results" / f"{name}.json")

    def benchmark(self, name: str) -> dict:
        """One benchmark's JSON file in ``benchmarks/``, by its name without ``.json``."""
        return read_json(self.repository / "benchmarks" / f"{name}.json")

    def model_card(self) -> dict:
        """The shipped network's model card (``retina_lib/pretrained/model_card.json``)."""
        return read_json(self.repository / "retina_lib" / "pretrained" / "model_card.json")

    def published(self, dataset: str, method: str) -> dict[str, float | None]:
        """A published result as notebook 04 lists it (its ``PUBLISHED`` table, checked against the papers)."""
        for cell in markdown_and_code_cells(self.repository / "notebooks" / "04_results.ipynb", "code"):
            if "PUBLISHED = [" in cell:
                assignment = next(node for node in ast.parse(cell).body
                                  if isinstance(node, ast.Assign) and node.targets[0].id == "PUBLISHED")
                for row in ast.literal_eval(assignment.value):
                    if row[:2] == (dataset, method):
                        return dict(zip(("f1", "auc_roc", "accuracy", "sensitivity", "specificity"), row[2:]))
        raise KeyError(f"notebook 04's PUBLISHED has no row for {method} on {dataset}")


#: How a figure's value is obtained from the sources.
Value = Callable[[Sources], float]


@dataclass(frozen=True)
class Measured:
    """One figure: the value it rounds, to how many decimals, and the text around it in a table cell."""

    value: Value
    digits: int
    cell: str = "{}"  # a table cell's whole text, {} for the number (e.g. "1x H200, {} s")


@dataclass(frozen=True)
class Figures:
    """A table cell that holds several figures: ``cell`` has one {} for each, in order."""

    cell: str
    figures: tuple[Measured, ...]


@dataclass(frozen=True)
class Quote:
    """A figure inside a sentence of ``document``, found by ``text`` ({} marks the number)."""

    document: str
    text: str
    value: Value
    digits: int
    after: str = ""  # words before the figure's paragraph, where the same words stand twice in the document


@dataclass(frozen=True)
class TableRow:
    """The row starting with ``label`` of the table under the heading ``section`` of ``document``.

    Where the first cell does not tell rows apart, ``label`` names the first
    cells joined by " | " ("LinkNet | plain"), and the figures start after them.

    ``cells`` maps a column header to the figure in that column, or to the
    fixed words the cell must read (a setting such as "1x H200", not a
    measurement); a column the entry leaves out must hold no number in this
    row ("-" or words). A figure whose value is None (not reported) must read "-".
    """

    document: str
    section: str
    label: str
    cells: dict[str, Measured | Figures | str] = field(default_factory=dict)


@dataclass(frozen=True)
class Table:
    """A Markdown table as read: the heading above it, its header cells and its rows of cells."""

    section: str
    header: list[str]
    rows: list[list[str]]


def markdown_and_code_cells(notebook: Path, kind: str) -> list[str]:
    """The source of every cell of one kind ("markdown" or "code") of a notebook."""
    cells = read_json(notebook)["cells"]
    return ["".join(cell["source"]) for cell in cells if cell["cell_type"] == kind]


def prose(path: Path) -> str:
    """The text a reader sees: a Markdown file as it is, a notebook's Markdown cells one after another."""
    if path.suffix == ".ipynb":
        return "\n\n".join(markdown_and_code_cells(path, "markdown"))
    return path.read_text()


def plain(cell: str) -> str:
    """A table cell without Markdown emphasis, so that **0.8102** reads as 0.8102."""
    return cell.replace("**", "").strip()


def tables(text: str) -> Iterator[Table]:
    """Every Markdown table of ``text``, with the heading it stands under."""
    section, block = "", []
    for line in text.splitlines() + [""]:
        if line.startswith("#"):
            section = line.lstrip("#").strip()
        if line.startswith("|"):
            block.append([cell.strip() for cell in line.strip().strip("|").split("|")])
            continue
        if len(block) >= 2:
            yield Table(section, [plain(cell) for cell in block[0]], block[2:])
        block = []


def matches(value: float, written: str, digits: int) -> bool:
    """Whether ``written`` is ``value`` rounded to ``digits`` decimals, as the prose shows it."""
    decimals = len(written.split(".")[1]) if "." in written else 0
    number = float(written.replace(",", ""))
    return decimals == digits and abs(number - value) <= 0.5 * 10 ** -digits * (1 + 1e-9)


def pattern(text: str, numbers: int = 1) -> re.Pattern:
    """The regular expression that finds ``text`` with any whitespace between words and a number for each {}."""
    if text.count("{}") != numbers:
        raise ValueError(f"{text!r} must hold {numbers} {{}} where the numbers stand")

    def loose(words: str) -> str:
        return "".join(r"\s+" if part.isspace() else re.escape(part) for part in re.split(r"(\s+)", words) if part)

    return re.compile(f"({NUMBER})".join(loose(words) for words in text.split("{}")))


def check_quote(quote: Quote, text: str, sources: Sources) -> list[str]:
    """Problems with one quoted figure: not found, or not the value it quotes.

    The figure checked is the first place the words stand (after ``quote.after``).
    """
    start = text.find(quote.after)
    if start < 0:
        return [f"{quote.document}: the words {quote.after!r} are not there (edit the registry with the prose)"]
    found = pattern(quote.text).search(text, start)
    if found is None:
        return [f"{quote.document}: the words {quote.text!r} are not there (edit the registry with the prose)"]
    value, written = quote.value(sources), found.group(1)
    if matches(value, written, quote.digits):
        return []
    return [f"{quote.document}: {quote.text.replace('{}', written)!r} should read "
            f"{value:.{quote.digits}f} (the source's value rounded to {quote.digits} decimals)"]


def labelled(rows: list[list[str]], label: str) -> list[list[str]]:
    """The rows whose first cell is ``label``: as written (with its **bold**) if one is, else without emphasis.

    Two rows may differ only in emphasis (the README's bold headline rows), so the
    registry can name either exactly.
    """
    width = label_width(label)
    exact = [row for row in rows if " | ".join(cell.strip() for cell in row[:width]) == label]
    return exact or [row for row in rows if " | ".join(plain(cell) for cell in row[:width]) == label]


def label_width(label: str) -> int:
    """How many cells a row label spans ("LinkNet | plain": 2)."""
    return label.count(" | ") + 1


def find_row(entry: TableRow, text: str) -> tuple[Table, list[str]] | None:
    """The table and the row an entry points at, or None."""
    for table in tables(text):
        if table.section == entry.section:
            rows = labelled(table.rows, entry.label)
            if rows:
                return table, rows[0]
    return None


def check_row(entry: TableRow, text: str, sources: Sources) -> list[str]:
    """Problems with one table row: missing, a figure that is not its source's, a number not registered."""
    where = f"{entry.document}, table under {entry.section!r}, row {entry.label!r}"
    found = find_row(entry, text)
    if found is None:
        return [f"{where}: no such row"]
    table, row = found
    problems = []
    if len(row) != len(table.header):
        problems.append(f"{where}: {len(row)} cells under a header of {len(table.header)}")
    width = label_width(entry.label)
    for column, written in zip(table.header[width:], row[width:]):
        cell = plain(written)
        if column not in entry.cells:
            if re.search(r"\d", cell):
                problems.append(f"{where}, column {column!r}: {cell!r} holds a number the registry does not know")
            continue
        figure = entry.cells[column]
        if isinstance(figure, str):
            if cell != figure:
                problems.append(f"{where}, column {column!r}: {cell!r} should read {figure!r}")
            continue
        if isinstance(figure, Measured):
            if figure.value(sources) is None:
                if cell != "-":
                    problems.append(f"{where}, column {column!r}: {cell!r} should be '-' (not reported)")
                continue
            figure = Figures(figure.cell, (figure,))
        numbers = re.fullmatch(pattern(figure.cell, len(figure.figures)), cell)
        if numbers is None:
            problems.append(f"{where}, column {column!r}: {cell!r} does not read like {figure.cell!r}")
            continue
        for measured, written in zip(figure.figures, numbers.groups()):
            if not matches(measured.value(sources), written, measured.digits):
                problems.append(f"{where}, column {column!r}: {cell!r} should hold "
                                f"{measured.value(sources):.{measured.digits}f} for its {written}")
    missing = set(entry.cells) - set(table.header[width:])
    problems += [f"{where}: the table has no column {column!r}" for column in sorted(missing)]
    return problems


def uncovered_table_cells(document: str, section: str, text: str, entries: list[TableRow]) -> list[str]:
    """Rows of the table under ``section`` that hold a number but have no registry entry."""
    labels = {entry.label for entry in entries if entry.document == document and entry.section == section}
    problems = []
    for table in tables(text):
        if table.section != section:
            continue
        covered = [id(row) for label in labels for row in labelled(table.rows, label)]
        for row in table.rows:
            if id(row) not in covered and any(re.search(r"\d", plain(cell)) for cell in row[1:]):
                problems.append(f"{document}, table under {section!r}: row {plain(row[0])!r} is not in the registry")
    return problems
