"""The README's Python examples run as written: the test executes the code blocks themselves, not a retyped copy."""
from __future__ import annotations

import json
import re
from pathlib import Path

import torch

REPOSITORY = Path(__file__).resolve().parents[1]


def python_blocks(document: Path) -> list[str]:
    """The code of every ```python block of a Markdown file, in order."""
    return re.findall(r"^```python\n(.*?)^```", document.read_text(), flags=re.MULTILINE | re.DOTALL)


def test_the_library_in_five_lines_runs(capsys) -> None:
    """The README's only Python block, given the two names it leaves to the reader: a batch and its labels."""
    blocks = python_blocks(REPOSITORY / "README.md")
    assert len(blocks) == 1, "a new ```python block in README.md needs its own test here"
    torch.manual_seed(0)
    namespace = {"images": torch.rand(2, 3, 64, 64), "labels": (torch.rand(2, 1, 64, 64) > 0.9).float()}
    exec(compile(blocks[0], "README.md", "exec"), namespace)

    printed = capsys.readouterr().out.splitlines()
    net = namespace["net"]
    assert len(printed) == len(net.state_dict())
    assert printed[0] == "initial.conv.weight torch.Size([64, 3, 7, 7])"
    # the count the README quotes is checked against this JSON by test_quoted_numbers; this ties the JSON to the model
    measured = json.loads((REPOSITORY / "benchmarks" / "results_cpu_peer.json").read_text())["peer"]["parameters"]
    assert sum(parameter.numel() for parameter in net.parameters()) == measured["linknet"]
    score, loss = namespace["score"], namespace["loss"]
    assert 0 < score.item() < 1 and torch.isclose(loss, 1 - score)


def test_the_results_readme_example_runs() -> None:
    """results/README.md shows how to list and load the stored results."""
    blocks = python_blocks(REPOSITORY / "results" / "README.md")
    assert len(blocks) == 1, "a new ```python block in results/README.md needs its own test here"
    namespace: dict = {}
    exec(compile(blocks[0], "results/README.md", "exec"), namespace)
    assert "ablation" in namespace["available_results"]()
    assert set(namespace["ablation"]) == {"original recipe (H200)", "course recipe (H200)", "course recipe (CPU)"}
