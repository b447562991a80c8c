"""Small stand-ins for the real external model files, with the same inputs and outputs, for end-to-end tests.

- (from hp_core.weights.random_weights) a YOLOv5-face TorchScript file called ``model(img, grids)`` that "detects" the red square of the image
  and returns decoded rows [cx, cy, w, h, obj, 10 landmark coords, cls] in network-input pixels;
- an ArcFace ONNX file with input ``data`` (1,3,112,112) and a 512-d output;
- synthetic portraits (a red square face on grey) and driving frames where the face moves;
- driving clips written by ffmpeg itself (not by the pack's writer), with or without a tone.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import imageio_ffmpeg
import numpy as np

from hp_core.weights.random_weights import write_stand_in_arcface, write_stand_in_yolo


# The YOLO-face and ArcFace stand-ins are hp_core's own (make-random-weights writes them into random folders).
write_fake_yolo = write_stand_in_yolo
write_fake_arcface = write_stand_in_arcface


def write_constant_onnx(path: str | Path, input_name: str, input_shape: list, outputs: list) -> Path:
    """An ONNX model that reads its input (as the real detectors do) and returns fixed tensors ``outputs``;
    stands in for SCRFD and the DWPose pair, whose decoding is what the tests check."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    nodes = [helper.make_node("ReduceMean", [input_name], ["m"], keepdims=0),
             helper.make_node("Mul", ["m", "zero"], ["z"])]
    inits = [numpy_helper.from_array(np.array(0, np.float32), "zero")]
    outs = []
    for i, arr in enumerate(outputs):
        inits.append(numpy_helper.from_array(np.asarray(arr, np.float32), f"c{i}"))
        nodes.append(helper.make_node("Add", [f"c{i}", "z"], [f"out{i}"]))
        outs.append(helper.make_tensor_value_info(f"out{i}", TensorProto.FLOAT, list(np.shape(arr))))
    inp = helper.make_tensor_value_info(input_name, TensorProto.FLOAT, input_shape)
    model = helper.make_model(helper.make_graph(nodes, "constant", [inp], outs, inits),
                              opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def write_fake_dwpose(folder: str | Path) -> Path:
    """The DWPose pair as constant ONNX stand-ins with the real files' input names and shapes and output shapes
    (YOLOX-L ``images`` (1, 3, 640, 640) -> (1, 8400, 85): box, objectness, 80 COCO class scores;
    dw-ll_ucoco_384 ``input`` (1, 3, 384, 288) -> SimCC x (1, 133, 576) and y (1, 133, 768)): one person in
    a stride-32 cell, whose nose, neck and shoulders are found in every crop. Written as
    ``folder``/yolox_l.onnx and dw-ll_ucoco_384.onnx."""
    folder = Path(folder)
    det = np.zeros((1, 8400, 85))
    det[0, 8085, :6] = [0.5, 0.5, np.log(4), np.log(8), 0.9, 0.9]
    simcc_x, simcc_y = np.zeros((1, 133, 576)), np.zeros((1, 133, 768))
    for k, (bx, by) in {0: (288, 300), 5: (400, 500), 6: (176, 500), 1: (288, 420)}.items():
        simcc_x[0, k, bx], simcc_y[0, k, by] = 0.9, 0.9  # nose, shoulders (COCO ids)
    write_constant_onnx(folder / "yolox_l.onnx", "images", [1, 3, 640, 640], [det])
    write_constant_onnx(folder / "dw-ll_ucoco_384.onnx", "input", [1, 3, 384, 288], [simcc_x, simcc_y])
    return folder


def portrait(h: int = 240, w: int = 320, box=(130, 70, 190, 150)) -> np.ndarray:
    """Grey image with a red square 'face' and some texture around it (uint8 RGB)."""
    rng = np.random.default_rng(1)
    img = (rng.integers(90, 160, (h, w, 3))).astype(np.uint8)
    img[..., 0] = np.minimum(img[..., 0], 150)
    x1, y1, x2, y2 = box
    img[y1:y2, x1:x2] = (240, 20, 20)
    return img


def driving_frames(n: int = 6, h: int = 200, w: int = 200) -> np.ndarray:
    """(n,h,w,3) uint8 frames whose red face drifts right and grows a little, one frame without a face."""
    frames = []
    for t in range(n):
        box = (60 + 2 * t, 50, 120 + 2 * t, 120 + t)
        frame = portrait(h, w, box)
        if n > 3 and t == n // 2:
            frame = portrait(h, w, (0, 0, 0, 0))
        frames.append(frame)
    return np.stack(frames)


def write_clip(path: str | Path, frames: np.ndarray, fps: float = 10.0, *, tone_hz: int | None = None,
               tone_seconds: float | None = None, crf: int = 4) -> Path:
    """An H.264 mp4 of uint8 frames (F, H, W, 3) written by ffmpeg (imageio-ffmpeg's binary), with a sine tone
    of ``tone_hz`` (AAC, as long as the clip unless ``tone_seconds``) or without audio."""
    frames = np.ascontiguousarray(frames, dtype=np.uint8)
    f, h, w = frames.shape[:3]
    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "rgb24",
           "-s", f"{w}x{h}", "-framerate", f"{fps:g}", "-i", "-"]
    if tone_hz:
        seconds = tone_seconds if tone_seconds is not None else f / fps
        cmd += ["-f", "lavfi", "-i", f"sine=frequency={tone_hz}:sample_rate=16000", "-map", "0:v", "-map", "1:a",
                "-t", f"{seconds:.3f}", "-c:a", "aac"]
    cmd += ["-c:v", "libx264", "-crf", str(crf), "-pix_fmt", "yuv420p", str(path)]
    subprocess.run(cmd, input=frames.tobytes(), check=True)
    return Path(path)
