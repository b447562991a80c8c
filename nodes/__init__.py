"""The ComfyUI nodes of the pack: thin adapters from ComfyUI types to hp_core calls."""

import logging

from . import appearance, bridge, loader, motion, output, performance, pose, sampler

NODE_CLASS_MAPPINGS: dict = {}
NODE_DISPLAY_NAME_MAPPINGS: dict = {}
for _module in (loader, motion, appearance, performance, pose, sampler, output):
    NODE_CLASS_MAPPINGS.update(_module.NODE_CLASS_MAPPINGS)
    NODE_DISPLAY_NAME_MAPPINGS.update(_module.NODE_DISPLAY_NAME_MAPPINGS)


def _check_onnxruntime() -> None:
    """Say at start-up (not in the middle of a run) when onnxruntime is missing or silently on the CPU."""
    try:
        from hp_core.preprocess import onnx_providers
        _, warning = onnx_providers()
    except Exception as err:  # noqa: BLE001 - a start-up hint must never stop ComfyUI from loading the pack
        warning = f"{err} The YOLO face detector works without it."
    if warning:
        logging.getLogger("HunyuanPortrait").warning("HunyuanPortrait: %s", warning)


bridge.register_model_folder()
if bridge.COMFY:
    _check_onnxruntime()

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]
