"""HunyuanPortrait for ComfyUI: the node pack's entry point (ComfyUI imports this file)."""

import importlib.util
import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))

# hp_core is a top-level package of this repository (the CLI runs it as `python -m hp_core`). Register it
# under that name without putting the repository itself on sys.path, whose folder names (nodes, tests)
# would shadow ComfyUI's own modules.
if "hp_core" not in sys.modules:
    _spec = importlib.util.spec_from_file_location(
        "hp_core", os.path.join(_HERE, "hp_core", "__init__.py"),
        submodule_search_locations=[os.path.join(_HERE, "hp_core")])
    _module = importlib.util.module_from_spec(_spec)
    sys.modules["hp_core"] = _module
    try:
        _spec.loader.exec_module(_module)
    except BaseException:
        del sys.modules["hp_core"]
        raise

if __package__:  # ComfyUI imports this folder as a package; pytest imports this file alone (no nodes then)
    from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS  # noqa: E402

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]
