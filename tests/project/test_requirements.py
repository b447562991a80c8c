"""Every runtime requirement earns its place: requirements.txt and pyproject.toml list the same packages,
each of them is imported by the pack's code, and every third-party module the code imports is listed
(torch and ComfyUI's own modules excepted: the host provides them)."""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# Distribution name -> the module it installs (written out by hand: the names differ for several).
MODULE_OF = {"diffusers": "diffusers", "safetensors": "safetensors", "huggingface-hub": "huggingface_hub",
             "tqdm": "tqdm", "opencv-python": "cv2", "imageio-ffmpeg": "imageio_ffmpeg", "numpy": "numpy",
             "pillow": "PIL", "onnxruntime-gpu": "onnxruntime", "onnxruntime": "onnxruntime"}
HOST = {"torch", "comfy", "folder_paths", "latent_preview", "server"}


def _names(lines) -> set[str]:
    out = set()
    for line in lines:
        line = line.split("#")[0].strip()
        if line:
            out.add(re.match(r"[A-Za-z0-9_.-]+", line).group(0).lower())
    return out


def _requirements() -> set[str]:
    return _names((ROOT / "requirements.txt").read_text().splitlines())


def _imported_modules() -> set[str]:
    found = set()
    for folder in ("hp_core", "nodes"):
        for path in (ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Import):
                    found |= {a.name.split(".")[0] for a in node.names}
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    found.add(node.module.split(".")[0])
    return found


def test_pyproject_lists_what_requirements_txt_lists():
    text = (ROOT / "pyproject.toml").read_text()
    deps = re.search(r"dependencies = \[(.*?)\]", text, re.S).group(1)
    assert _names(re.findall(r'"([^"]+)"', deps)) == _requirements()


def test_every_requirement_is_imported_by_the_code():
    imported = _imported_modules()
    unused = {dist for dist in _requirements() if MODULE_OF.get(dist) not in imported}
    assert unused == set(), f"listed but never imported: {sorted(unused)}"
    assert "torch" not in _requirements()


def test_every_third_party_import_is_listed():
    stdlib = set(sys.stdlib_module_names)
    ours = {"hp_core", "nodes"}
    third_party = {m for m in _imported_modules() if m not in stdlib | ours | HOST}
    listed = {MODULE_OF[d] for d in _requirements() if d in MODULE_OF}
    assert third_party <= listed, f"imported but not listed: {sorted(third_party - listed)}"


def test_test_requirements_add_no_second_onnxruntime_or_opencv():
    """Installing the test requirements into a pack's environment keeps its onnxruntime-gpu and OpenCV:
    they include requirements.txt as is, and list no other distribution of the same modules."""
    lines = [l.split("#")[0].strip() for l in (ROOT / "requirements-test.txt").read_text().splitlines()]
    assert "-r requirements.txt" in lines
    extra = _names(l for l in lines if l and not l.startswith("-r"))
    assert extra and not any(d.startswith(("onnxruntime", "opencv")) for d in extra), extra
    assert {MODULE_OF[d] for d in _requirements() if d in MODULE_OF} >= {"onnxruntime", "cv2"}
