"""Writes the pictures of the pack: a thumbnail per example workflow and the Registry icon.

    python workflows/thumbnails.py [SHOTS]    # SHOTS: the screenshots folder (default $HP_SCREENSHOTS)

ComfyUI's template browser (Workflow > Browse Templates, "Custom Nodes" group) lists every
``workflows/<name>.json`` of a pack and shows ``workflows/<name>.jpg`` beside it as the card's picture; the
frontend (1.27) takes the card's title and description from the file name only. So the one-line description
is written into the picture, under a crop of the graph.

The crops come from the real frontend: tests/comfyui/test_comfyui_frontend.py saves
``hunyuan_portrait_<name>.png`` (1600x900) for every workflow when HP_SCREENSHOTS names a folder.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from PIL import Image, ImageDraw

from PIL import ImageFont

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
ICON = ROOT / "docs" / "icon.png"

SIZE = 512          # thumbnails are SIZE x SIZE (the browser shows them in a 256 px square)
CAPTION = 112       # height of the caption band at the bottom
# The part of a 1600x900 screenshot shown: the canvas's first three stages (inputs, motion and appearance,
# sampling), where the examples differ; left out: the side bar, the tab bar and the minimap.
CROP = (72, 84, 72 + 740, 84 + 740)
BACKGROUND = (24, 24, 27)
ACCENT = (242, 140, 40)

# One line per example (file name -> what it does), in the order of workflows/build.py's WORKFLOWS.
DESCRIPTIONS = {
    "hunyuan_portrait_basic": ("Basic", "Portrait + driving video, the release's settings"),
    "hunyuan_portrait_long_video": ("Long video", "Every frame, overlapping windows, smoothing"),
    "hunyuan_portrait_dwpose": ("DWPose", "Driving skeletons aligned to the portrait"),
    "hunyuan_portrait_fast": ("Fast draft", "dpmpp_2m + Align-Your-Steps, 10 steps"),
    "hunyuan_portrait_comfy_sampler": ("ComfyUI sampler", "KSamplerSelect + AlignYourStepsScheduler"),
    "hunyuan_portrait_pose_edit": ("Pose edit", "Relative head pose, smoothing, expression"),
    "hunyuan_portrait_performance": ("Performance", "Save the driving side once, reuse it"),
}


def _font(size: int):
    return ImageFont.load_default(size=size)


def thumbnail(screenshot: Path, title: str, line: str):
    """A SIZE x SIZE RGB picture: the crop of the graph above a caption band (title, one line)."""

    shot = Image.open(screenshot).convert("RGB")
    if shot.size != (1600, 900):
        shot = shot.resize((1600, 900), Image.LANCZOS)
    graph = shot.crop(CROP).resize((SIZE, SIZE - CAPTION), Image.LANCZOS, box=(0, 0, 740, 740 * (SIZE - CAPTION) / SIZE))
    out = Image.new("RGB", (SIZE, SIZE), BACKGROUND)
    out.paste(graph, (0, 0))
    draw = ImageDraw.Draw(out)
    top = SIZE - CAPTION
    draw.rectangle((0, top, SIZE, top + 4), fill=ACCENT)
    draw.text((20, top + 16), f"HunyuanPortrait: {title}", font=_font(36), fill=(245, 245, 245))
    draw.text((20, top + 66), line, font=_font(24), fill=(200, 200, 205))
    return out


def icon(size: int = 400):
    """The Registry icon (square, at most 400 px): a portrait's outline between motion arcs, on a dark tile."""

    scale = 4  # drawn large, then reduced: smooth edges
    s = size * scale
    img = Image.new("RGBA", (s, s), (0, 0, 0, 0))
    d = ImageDraw.Draw(img)
    pad = int(s * 0.06)
    d.rounded_rectangle((pad, pad, s - pad, s - pad), radius=int(s * 0.18), fill=(38, 38, 44))
    cx, w = s // 2, int(s * 0.06)
    # head and shoulders
    d.ellipse((cx - int(s * 0.15), int(s * 0.22), cx + int(s * 0.15), int(s * 0.56)), outline=(245, 245, 245), width=w)
    d.arc((cx - int(s * 0.30), int(s * 0.62), cx + int(s * 0.30), int(s * 1.10)), 200, 340,
          fill=(245, 245, 245), width=w)
    # the motion: two arcs beside the head
    for r, colour in ((0.25, ACCENT), (0.34, (255, 190, 120))):
        box = (cx - int(s * r), int(s * (0.39 - r)), cx + int(s * r), int(s * (0.39 + r)))
        d.arc(box, -40, 40, fill=colour, width=int(w * 0.7))
        d.arc(box, 140, 220, fill=colour, width=int(w * 0.7))
    return img.resize((size, size), Image.LANCZOS)


def write_all(shots: Path, folder: Path = HERE) -> list[Path]:
    """Write workflows/<name>.jpg for every example (from shots/<name>.png) and docs/icon.png."""
    written = []
    for name, (title, line) in DESCRIPTIONS.items():
        path = folder / f"{name}.jpg"
        thumbnail(shots / f"{name}.png", title, line).save(path, "JPEG", quality=85, optimize=True, progressive=True)
        written.append(path)
    ICON.parent.mkdir(parents=True, exist_ok=True)
    icon().save(ICON, optimize=True)
    written.append(ICON)
    return written


if __name__ == "__main__":
    if len(sys.argv) < 2 and not os.environ.get("HP_SCREENSHOTS"):
        sys.exit("usage: python workflows/thumbnails.py SHOTS (the folder HP_SCREENSHOTS=SHOTS browser tests wrote)")
    shots = Path(sys.argv[1] if len(sys.argv) > 1 else os.environ["HP_SCREENSHOTS"])
    for p in write_all(shots):
        print(p.relative_to(ROOT), p.stat().st_size, "bytes")
