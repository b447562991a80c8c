"""The one precision table: which network runs in which dtype, for each precision choice and device.

The CLI, the library (hp_core.run) and the loader node all read it; ``load_component`` falls back to the
release's column.
"""

from __future__ import annotations

import torch

from ..errors import HPError

# The release keeps the motion encoders and the refiner in fp32 (and the VAE, which SVD up-casts), the
# rest in fp16.
RELEASE_DTYPES = {"unet": torch.float16, "dino": torch.float16, "image_proj": torch.float16,
                  "pose_guider": torch.float16, "vae": torch.float32, "motion_proj": torch.float32,
                  "expression": torch.float32, "headpose": torch.float32}
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
PRECISIONS = ("auto", "fp16", "bf16", "fp32", "fp8")
# fp8: these networks' Linear/conv weights are stored as float8_e4m3fn (half of fp16) and cast to the compute
# dtype per layer call (hp_core.models.fp8); they compute in what "auto" gives them.
FP8_NETWORKS = ("unet", "dino")


def precision_dtypes(precision: str, device: torch.device | str,
                     auto_half: torch.dtype = torch.float16) -> dict[str, torch.dtype]:
    """dtype of every network (and the VAE) for a precision choice on a device.

    auto: the release's precisions, with ``auto_half`` for its fp16 networks (a host may pick bf16 where
    fp16 is not supported), and fp32 everywhere on the CPU (fp16 convolutions are slow or missing there).
    fp16/bf16: the release's reduced networks and the VAE in that precision; the motion path stays fp32.
    fp8: the compute dtypes of auto; ``fp8_networks`` says which networks store fp8 weights.
    """
    if precision not in PRECISIONS:
        raise HPError(f"Unknown precision {precision!r}.", hint=f"Choose one of {', '.join(PRECISIONS)}.")
    if precision == "fp8":
        precision = "auto"
    if precision == "fp32" or (precision == "auto" and torch.device(device).type == "cpu"):
        return {n: torch.float32 for n in RELEASE_DTYPES}
    half = auto_half if precision == "auto" else DTYPES[precision]
    out = {n: (half if dt == torch.float16 else torch.float32) for n, dt in RELEASE_DTYPES.items()}
    out["vae"] = torch.float32 if precision == "auto" else half  # it decodes every frame: fp32 unless asked
    return out


def fp8_networks(precision: str) -> tuple[str, ...]:
    """The networks whose weights are stored as fp8 for a precision choice (none unless 'fp8')."""
    return FP8_NETWORKS if precision == "fp8" else ()


__all__ = ["DTYPES", "FP8_NETWORKS", "PRECISIONS", "RELEASE_DTYPES", "fp8_networks", "precision_dtypes"]
