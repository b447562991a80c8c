"""The release's face detector: YOLOv5m-face as a TorchScript file (yoloface_v5m.pt).

The scripted model already turns its raw head outputs into boxes: it is given the cell-index grids and
returns rows ``[cx, cy, w, h, obj, 5 x (x, y) landmarks, class]`` in pixels of the network input. What
is left to us is the input size, confidence, NMS and scaling back to the frame.
"""

from __future__ import annotations

import os
import warnings

import cv2
import numpy as np
import torch

from ..errors import HPError
from .faces import Face, nms

INPUT_SHORT_SIDE = 416
STRIDES = (8, 16, 32)
CONF_THRESHOLD = 0.5
IOU_THRESHOLD = 0.45


def network_size(height: int, width: int, short_side: int = INPUT_SHORT_SIDE) -> tuple[int, int]:
    """(h, w) the frame is resized to: shorter side to 416, each side then rounded up to a multiple of 32."""
    ratio = short_side / min(height, width)
    return int(height * ratio + 31) // 32 * 32, int(width * ratio + 31) // 32 * 32


def make_grids(height: int, width: int, device: torch.device | str = "cpu") -> list[torch.Tensor]:
    """Per stride a (1, 1, ny, nx, 2) float tensor holding each cell's (x, y) index."""
    grids = []
    for stride in STRIDES:
        ny, nx = height // stride, width // stride
        ys, xs = torch.meshgrid(torch.arange(ny), torch.arange(nx), indexing="ij")
        grids.append(torch.stack((xs, ys), dim=2).view(1, 1, ny, nx, 2).float().to(device))
    return grids


def decode_predictions(pred: np.ndarray, scale_x: float, scale_y: float,
                       conf_threshold: float = CONF_THRESHOLD, iou_threshold: float = IOU_THRESHOLD) -> list[Face]:
    """Rows (N, 16) from the model -> faces in frame pixels, best first (the release's NMS rules)."""
    pred = np.asarray(pred, dtype=np.float32).reshape(-1, pred.shape[-1])
    pred = pred[pred[:, 4] > conf_threshold]  # objectness alone must pass first
    if not len(pred):
        return []
    conf = pred[:, 15] * pred[:, 4]
    pred, conf = pred[conf > conf_threshold], conf[conf > conf_threshold]
    if not len(pred):
        return []
    cx, cy, w, h = pred[:, 0], pred[:, 1], pred[:, 2], pred[:, 3]
    boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
    keep = nms(boxes, conf, iou_threshold)
    scale = np.array([scale_x, scale_y, scale_x, scale_y])
    faces = []
    for i in keep:
        marks = pred[i, 5:15].astype(np.float64).reshape(5, 2) * np.array([scale_x, scale_y])
        faces.append(Face(box=boxes[i].astype(np.float64) * scale, score=float(conf[i]), landmarks=marks))
    return faces


class YoloFaceDetector:
    """FaceDetector around the scripted YOLOv5m-face model."""

    def __init__(self, model: torch.jit.ScriptModule | torch.nn.Module, device: torch.device | str = "cpu",
                 conf_threshold: float = CONF_THRESHOLD, iou_threshold: float = IOU_THRESHOLD):
        self.model = model
        self.device = torch.device(device)
        self.conf_threshold = conf_threshold
        self.iou_threshold = iou_threshold
        self._grids: dict[tuple[int, int], list[torch.Tensor]] = {}

    def _grids_for(self, h: int, w: int) -> list[torch.Tensor]:
        if (h, w) not in self._grids:
            if len(self._grids) > 16:  # bounded: a video has one size, a batch of images a few
                self._grids.clear()
            self._grids[(h, w)] = make_grids(h, w, self.device)
        return self._grids[(h, w)]

    @torch.no_grad()
    def detect(self, image: np.ndarray) -> list[Face]:
        """Faces in an RGB uint8 H x W x 3 frame, in its pixels, best first."""
        h0, w0 = image.shape[:2]
        h1, w1 = network_size(h0, w0)
        # Resized directly from full resolution with bilinear, as the release does (a 4K frame is
        # never copied at full size here; only the small network input is made).
        small = cv2.resize(image, (w1, h1), interpolation=cv2.INTER_LINEAR)
        x = torch.from_numpy(np.ascontiguousarray(small)).to(self.device).permute(2, 0, 1)
        x = (x.float() / 255).unsqueeze(0)
        pred = self.model(x, self._grids_for(h1, w1))
        if isinstance(pred, (tuple, list)):
            pred = pred[0]
        pred = pred.float().cpu().numpy()[0]
        return decode_predictions(pred, w0 / w1, h0 / h1, self.conf_threshold, self.iou_threshold)


def load_yolo_face(path: str | os.PathLike, device: torch.device | str | None = None) -> YoloFaceDetector:
    """Open yoloface_v5m.pt (TorchScript) on a device (default: CUDA when available, else CPU)."""
    path = os.fspath(path)
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if not os.path.isfile(path):
        raise HPError(f"The face detector file {path} does not exist.",
                      hint="Download yoloface_v5m.pt (Hugging Face LeonJoe13/Sonic) into the models folder.")
    try:
        with warnings.catch_warnings():  # the file format is TorchScript; torch's deprecation notice is noise here
            warnings.simplefilter("ignore", DeprecationWarning)
            model = torch.jit.load(path, map_location=device)
    except Exception as err:  # TorchScript raises RuntimeError or its own C++ errors
        raise HPError(f"The face detector file {path} is not a TorchScript model that can be loaded ({err}).",
                      hint="It should be yoloface_v5m.pt from LeonJoe13/Sonic; download it again.") from err
    model.eval()
    return YoloFaceDetector(model, device)
