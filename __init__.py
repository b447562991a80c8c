"""HunyuanPortrait for ComfyUI: the node pack's entry point (ComfyUI imports this file)."""

import importlib.util
import logging
import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))



def duplicate_warning(here: str, loaded_hp_core: str | None) -> str | None:
    """The start-up warning when another copy of the pack already registered its hp_core, else None."""
    if not loaded_hp_core:
        return None
    other = os.path.dirname(os.path.dirname(os.path.abspath(loaded_hp_core)))
    if os.path.normcase(os.path.realpath(other)) == os.path.normcase(os.path.realpath(here)):
        return None
    return (f"HunyuanPortrait is installed twice: {other} and {here}. This copy runs the other's hp_core "
            f"code and whichever copy loads last owns the node names. Remove one of the two folders from "
            f"custom_nodes and restart ComfyUI.")


_warning = duplicate_warning(_HERE, getattr(sys.modules.get("hp_core"), "__file__", None))
if _warning:
    logging.getLogger("HunyuanPortrait").warning(_warning)

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
