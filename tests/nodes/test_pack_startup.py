"""Start-up of the pack's entry point: a second copy of the pack in custom_nodes is reported once, naming
both folders; the copy that registered hp_core first is not warned about itself; loading the nodes leaves
the heavy libraries (diffusers, transformers) for the first run."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import hp_core

ROOT = Path(__file__).resolve().parents[2]


def _run_entry_point(folder: Path, caplog) -> str:
    """Execute folder/__init__.py the way a second import would (hp_core already registered); its log."""
    path = folder / "__init__.py"
    # As a plain module (no parent package), so the node modules are not imported a second time.
    scope = {"__name__": "hp_entry_under_test", "__file__": str(path), "__package__": ""}
    caplog.clear()
    with caplog.at_level("WARNING", logger="HunyuanPortrait"):
        exec(compile(path.read_text(encoding="utf-8"), str(path), "exec"), scope)
    return caplog.text


def test_a_second_copy_is_named_with_the_first(tmp_path, caplog):
    assert Path(hp_core.__file__).resolve().parent.parent == ROOT  # the first copy: this checkout
    copy = tmp_path / "ComfyUI-HunyuanPortrait-copy"
    copy.mkdir()
    shutil.copy(ROOT / "__init__.py", copy / "__init__.py")
    text = _run_entry_point(copy, caplog)
    assert "installed twice" in text and str(ROOT) in text and str(copy) in text
    assert "Remove one of the two folders" in text
    assert text.count("installed twice") == 1
    assert sys.modules["hp_core"] is hp_core  # the copy did not replace the registered hp_core


def test_the_first_copy_says_nothing(caplog):
    assert "installed twice" not in _run_entry_point(ROOT, caplog)


def test_loading_the_nodes_leaves_diffusers_for_the_first_run():
    """ComfyUI imports every pack at start-up: ours must not add seconds by importing diffusers there."""
    probe = "import sys, nodes; print(sorted(m for m in ('diffusers', 'transformers') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
