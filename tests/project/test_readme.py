"""The README's node table is made from the nodes' own declarations (names in the UI, every input, every
output), so it cannot drift: regenerate it with ``PYTHONPATH=. python tests/project/test_readme.py --write``."""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
BEGIN, END = "<!-- nodes:begin -->", "<!-- nodes:end -->"


def _inputs(cls) -> str:
    spec = cls.INPUT_TYPES()
    required = list(spec.get("required", {}))
    optional = [f"*{name}*" for name in spec.get("optional", {})]
    return ", ".join(required + optional)


def render_table() -> str:
    """One row per node, in the order the pack registers them: UI name, inputs (optional ones in italics),
    outputs."""
    import nodes

    rows = ["| Node | Inputs (*optional*) | Outputs |", "|---|---|---|"]
    for key, cls in nodes.NODE_CLASS_MAPPINGS.items():
        outputs = ", ".join(getattr(cls, "RETURN_NAMES", None) or cls.RETURN_TYPES) or "(saves a file)"
        rows.append(f"| **{nodes.NODE_DISPLAY_NAME_MAPPINGS[key]}** | {_inputs(cls)} | {outputs} |")
    return "\n".join(rows)


def readme_table(text: str) -> str:
    return text.split(BEGIN, 1)[1].split(END, 1)[0].strip()


def test_the_readme_node_table_is_the_nodes_declarations():
    text = README.read_text(encoding="utf-8")
    assert readme_table(text) == render_table(), "run: PYTHONPATH=. python tests/project/test_readme.py --write"


def test_the_readme_is_short_and_names_nodes_as_the_ui_does():
    import nodes

    text = README.read_text(encoding="utf-8")
    assert len(text.splitlines()) < 150
    for name in nodes.NODE_DISPLAY_NAME_MAPPINGS.values():
        assert f"**{name}**" in text
    assert not re.search(r"not measured here", text)


if __name__ == "__main__" and sys.argv[1:] == ["--write"]:
    sys.path.insert(0, str(ROOT))
    text = README.read_text(encoding="utf-8")
    head, rest = text.split(BEGIN, 1)
    README.write_text(head + BEGIN + "\n" + render_table() + "\n" + END + rest.split(END, 1)[1], encoding="utf-8")
