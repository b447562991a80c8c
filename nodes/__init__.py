"""The ComfyUI nodes of the pack: thin adapters from ComfyUI types to hp_core calls."""

import logging

from . import appearance, bridge, loader, motion, output, performance, pose, sampler

NODE_CLASS_MAPPINGS: dict = {}
NODE_DISPLAY_NAME_MAPPINGS: dict = {}
for _module in (loader, motion, appearance, performance, pose, sampler, output):
    NODE_CLASS_MAPPINGS.update(_module.NODE_CLASS_MAPPINGS)
    NODE_DISPLAY_NAME_MAPPINGS.update(_module.NODE_DISPLAY_NAME_MAPPINGS)

# What people type in the node search to find this method. Only what it does: a driving *video* moves the
# portrait (no audio-driven lip sync), and it is not LivePortrait. A ComfyUI that reads SEARCH_ALIASES offers
# the nodes under these words; 0.3.64 and its frontend 1.27 ignore the attribute.
SEARCH_ALIASES = ("hunyuan portrait", "hunyuanportrait", "portrait animation", "talking head",
                  "face reenactment", "face animation", "expression transfer", "head pose transfer")
for _cls in NODE_CLASS_MAPPINGS.values():
    _cls.SEARCH_ALIASES = list(dict.fromkeys([*getattr(_cls, "SEARCH_ALIASES", ()), *SEARCH_ALIASES]))


def _check_onnxruntime() -> None:
    """Say at start-up (not in the middle of a run) when onnxruntime is missing or silently on the CPU."""
    try:
        from hp_core.preprocess import onnx_providers  # guarded: a start-up hint must never stop the pack loading
        _, warning = onnx_providers()
    except Exception as err:  # noqa: BLE001 - a start-up hint must never stop ComfyUI from loading the pack
        warning = f"{err} The YOLO face detector works without it."
    if warning:
        logging.getLogger("HunyuanPortrait").warning("HunyuanPortrait: %s", warning)


bridge.register_model_folder()
if bridge.COMFY:
    _check_onnxruntime()

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]
