"""Small stand-ins for the real external model files, with the same inputs and outputs, for end-to-end tests.

- a YOLOv5-face TorchScript file called ``model(img, grids)`` that "detects" the red square of the image
  and returns decoded rows [cx, cy, w, h, obj, 10 landmark coords, cls] in network-input pixels;
- an ArcFace ONNX file with input ``data`` (1,3,112,112) and a 512-d output;
- synthetic portraits (a red square face on grey) and driving frames where the face moves.
"""

from __future__ import annotations

from pathlib import Path
from typing import List

import numpy as np
import torch


class _RedFaceYolo(torch.nn.Module):
    def forward(self, img: torch.Tensor, grids: List[torch.Tensor]) -> torch.Tensor:
        red = (img[0, 0] > 0.8) & (img[0, 1] < 0.25) & (img[0, 2] < 0.25)
        ys = torch.nonzero(red.any(dim=1)).flatten()
        xs = torch.nonzero(red.any(dim=0)).flatten()
        row = torch.zeros(1, 1, 16)
        if ys.numel() == 0:
            return row
        x1, x2 = xs.min().float(), xs.max().float() + 1
        y1, y2 = ys.min().float(), ys.max().float() + 1
        w, h = x2 - x1, y2 - y1
        fr = torch.tensor([[0.3, 0.35], [0.7, 0.35], [0.5, 0.55], [0.35, 0.75], [0.65, 0.75]])
        marks = torch.stack([x1 + fr[:, 0] * w, y1 + fr[:, 1] * h], dim=1).flatten()
        row[0, 0, 0] = (x1 + x2) / 2
        row[0, 0, 1] = (y1 + y2) / 2
        row[0, 0, 2] = w
        row[0, 0, 3] = h
        row[0, 0, 4] = 0.95
        row[0, 0, 5:15] = marks
        row[0, 0, 15] = 0.95
        return row


def write_fake_yolo(path: str | Path) -> Path:
    """A TorchScript file with yoloface_v5m.pt's call signature that finds the red square."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.jit.script(_RedFaceYolo()).save(str(path))
    return path


def write_fake_arcface(path: str | Path, seed: int = 0) -> Path:
    """An ONNX recogniser with input ``data`` (1,3,112,112) -> (1,512): channel means times a fixed matrix."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    weight = np.random.default_rng(seed).standard_normal((3, 512)).astype(np.float32)
    nodes = [helper.make_node("ReduceMean", ["data"], ["m"], axes=[2, 3], keepdims=0),
             helper.make_node("MatMul", ["m", "w"], ["emb"])]
    graph = helper.make_graph(nodes, "arcface_fake",
                              [helper.make_tensor_value_info("data", TensorProto.FLOAT, [1, 3, 112, 112])],
                              [helper.make_tensor_value_info("emb", TensorProto.FLOAT, [1, 512])],
                              [numpy_helper.from_array(weight, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


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
