"""HunyuanPortrait core: networks, preprocessing, sampling and pipeline, without any ComfyUI import."""

from .errors import HPError

__all__ = ["HPError"]
__version__ = "0.1.0"
