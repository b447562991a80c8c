"""Face detectors: YOLOv5-face (TorchScript) and SCRFD (ONNX) decoding + NMS on small models made here,
face selection, and the onnxruntime provider choice."""

from typing import List

import numpy as np
import pytest
import torch

from fakes import write_constant_onnx

from hp_core.errors import HPError
from hp_core.preprocess.faces import Face, nms, select_face
from hp_core.preprocess.onnx_session import onnx_providers
from hp_core.preprocess.scrfd import load_scrfd, scrfd_blob, letterbox_top_left
from hp_core.preprocess.yolo_face import load_yolo_face, network_size


# ---- YOLOv5-face -----------------------------------------------------------------------------

def _row(cx, cy, w, h, obj, cls, marks=None):
    if marks is None:
        marks = [cx - 8, cy - 5, cx + 8, cy - 5, cx, cy + 2, cx - 6, cy + 12, cx + 6, cy + 12]
    return [cx, cy, w, h, obj, *marks, cls]


class _ScriptedYolo(torch.nn.Module):
    """Stands in for yoloface_v5m.pt: same call (img, grids), fixed decoded rows; checks what it is given."""

    def __init__(self, rows: torch.Tensor, expect_h: int, expect_w: int):
        super().__init__()
        self.register_buffer("rows", rows)
        self.expect_h = expect_h
        self.expect_w = expect_w

    def forward(self, x: torch.Tensor, grids: List[torch.Tensor]) -> torch.Tensor:
        assert x.shape[0] == 1 and x.shape[1] == 3
        assert x.shape[2] == self.expect_h and x.shape[3] == self.expect_w
        assert float(x.max()) <= 1.0 and float(x.min()) >= 0.0
        assert len(grids) == 3
        strides = [8, 16, 32]
        for i in range(3):
            g = grids[i]
            assert g.shape[0] == 1 and g.shape[1] == 1 and g.shape[4] == 2
            assert g.shape[2] == self.expect_h // strides[i] and g.shape[3] == self.expect_w // strides[i]
            assert float(g[0, 0, 0, 1, 0]) == 1.0 and float(g[0, 0, 0, 1, 1]) == 0.0  # (x, y) order
            assert float(g[0, 0, 1, 0, 0]) == 0.0 and float(g[0, 0, 1, 0, 1]) == 1.0
        # red channel first: the test image is pure red
        assert float(x[0, 0].mean()) > 0.9 and float(x[0, 2].mean()) < 0.1
        return self.rows.unsqueeze(0)


def test_network_size_by_hand():
    # 600x800: 416/600 -> 416 and 554.67; +31 and floor to multiples of 32 -> 416, 576
    assert network_size(600, 800) == (416, 576)
    # 1080x1920: 416 and 739.56 -> 416, 768
    assert network_size(1080, 1920) == (416, 768)
    assert network_size(512, 512) == (416, 416)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_yolo_decoding_nms_and_scale_back(tmp_path):
    rows = torch.tensor([
        _row(100, 120, 40, 60, 0.9, 0.95),    # A: conf .855
        _row(104, 122, 40, 60, 0.8, 0.9),     # B: IoU .77 with A -> suppressed
        _row(300, 200, 80, 100, 0.7, 0.8),    # C: conf .56
        _row(400, 300, 50, 50, 0.6, 0.7),     # D: obj passes, obj*cls = .42 fails
        _row(450, 100, 50, 50, 0.4, 1.0),     # E: obj below .5
        _row(130, 120, 40, 60, 0.99, 0.6),    # F: IoU .14 with A -> kept, conf .594
    ], dtype=torch.float32)
    path = tmp_path / "yoloface.pt"
    torch.jit.save(torch.jit.script(_ScriptedYolo(rows, 416, 576)), str(path))
    det = load_yolo_face(path, "cpu")
    image = np.zeros((600, 800, 3), np.uint8)
    image[..., 0] = 255
    faces = det.detect(image)
    sx, sy = 800 / 576, 600 / 416
    assert [round(f.score, 4) for f in faces] == [0.855, 0.594, 0.56]
    a = faces[0]
    np.testing.assert_allclose(a.box, [80 * sx, 90 * sy, 120 * sx, 150 * sy], rtol=1e-6)
    np.testing.assert_allclose(a.landmarks, [[92 * sx, 115 * sy], [108 * sx, 115 * sy], [100 * sx, 122 * sy],
                                             [94 * sx, 132 * sy], [106 * sx, 132 * sy]], rtol=1e-6)
    np.testing.assert_allclose(faces[2].box, [260 * sx, 150 * sy, 340 * sx, 250 * sy], rtol=1e-6)


def test_yolo_loader_errors(tmp_path):
    with pytest.raises(HPError, match="does not exist"):
        load_yolo_face(tmp_path / "missing.pt", "cpu")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a torchscript file")
    with pytest.raises(HPError, match="TorchScript"):
        load_yolo_face(bad, "cpu")


def test_nms_conventions():
    boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [20, 20, 30, 30], [0, 0, 10, 10]], float)
    scores = np.array([0.9, 0.8, 0.7, 0.95])
    # box 3 (best) suppresses 0 (IoU 1) and 1 (IoU 90/110 = .82); 2 is apart
    assert nms(boxes, scores, 0.45).tolist() == [3, 2]
    # IoU of [0,0,10,10] and [5,0,15,10]: 50 / 150 = .333 (no offset); with +1 areas 66/176 = .375
    two = np.array([[0, 0, 10, 10], [5, 0, 15, 10]], float)
    assert nms(two, np.array([0.9, 0.8]), 0.34).tolist() == [0, 1]
    assert nms(two, np.array([0.9, 0.8]), 0.34, pixel_offset=1.0).tolist() == [0]


# ---- SCRFD -----------------------------------------------------------------------------------

def test_scrfd_decoding_and_nms(tmp_path):
    counts = {8: 80 * 80 * 2, 16: 40 * 40 * 2, 32: 20 * 20 * 2}
    scores = {s: np.zeros((n, 1)) for s, n in counts.items()}
    dists = {s: np.zeros((n, 4)) for s, n in counts.items()}
    kps = {s: np.zeros((n, 10)) for s, n in counts.items()}
    # stride 8, cell x=10 y=5, anchor 1 -> row 821, anchor centre (80, 40)
    scores[8][821] = 0.9
    dists[8][821] = [2, 3, 4, 5]            # x8 -> box (64, 16, 112, 80)
    kps[8][821] = [-1, -1, 1, -1, 0, 0, -1, 1, 1, 1]
    # stride 8, cell x=11 y=5, anchor 0 -> row 822, centre (88, 40): same box, lower score -> suppressed
    scores[8][822] = 0.8
    dists[8][822] = [3, 3, 3, 5]
    # stride 32, cell x=10 y=8, anchor 0 -> row 340, centre (320, 256): box (288, 224, 352, 288)
    scores[32][340] = 0.7
    dists[32][340] = [1, 1, 1, 1]
    # below the 0.5 threshold
    scores[16][100] = 0.3
    dists[16][100] = [1, 1, 1, 1]
    outputs = [scores[s] for s in (8, 16, 32)] + [dists[s] for s in (8, 16, 32)] + [kps[s] for s in (8, 16, 32)]
    path = tmp_path / "det_10g.onnx"
    write_constant_onnx(path, "input.1", [1, 3, 640, 640], outputs)
    det = load_scrfd(path, ["CPUExecutionProvider"])
    # 960x1280 fits 640x480 of the input: scale 0.5, so frame coordinates are input coordinates x 2
    faces = det.detect(np.full((960, 1280, 3), 90, np.uint8))
    assert [round(f.score, 4) for f in faces] == [0.9, 0.7]
    np.testing.assert_allclose(faces[0].box, [128, 32, 224, 160], atol=1e-4)
    np.testing.assert_allclose(faces[0].landmarks, 2 * np.array([[72, 32], [88, 32], [80, 40], [72, 48], [88, 48]]),
                               atol=1e-4)
    np.testing.assert_allclose(faces[1].box, [576, 448, 704, 576], atol=1e-4)


def test_scrfd_input_layout():
    img = np.zeros((100, 200, 3), np.uint8)
    img[..., 0] = 255  # red
    canvas, scale = letterbox_top_left(img, (640, 640))
    assert scale == pytest.approx(320 / 100)
    assert canvas.shape == (640, 640, 3) and canvas[:320, :, 0].min() == 255 and canvas[320:].max() == 0
    blob = scrfd_blob(canvas)
    assert blob.shape == (1, 3, 640, 640) and blob.dtype == np.float32
    assert blob[0, 0, 0, 0] == pytest.approx((255 - 127.5) / 128)   # RGB order kept: channel 0 is red
    assert blob[0, 2, 0, 0] == pytest.approx(-127.5 / 128)
    assert blob[0, 0, 639, 0] == pytest.approx(-127.5 / 128)          # black padding below


# ---- selection and providers -----------------------------------------------------------------

def _face(x1, y1, x2, y2):
    return Face(box=[x1, y1, x2, y2], score=0.9, landmarks=np.zeros((5, 2)))


def test_face_selection_largest_and_left_to_right():
    faces = [_face(300, 0, 350, 50), _face(0, 0, 40, 40), _face(100, 0, 200, 100)]
    assert select_face(faces).box[0] == 100                  # largest area
    assert select_face(faces, 0).box[0] == 0                 # leftmost
    assert select_face(faces, 1).box[0] == 100
    assert select_face(faces, 2).box[0] == 300
    assert select_face(faces, -1).box[0] == 300
    with pytest.raises(HPError, match="3 face"):
        select_face(faces, 3)
    with pytest.raises(HPError, match="No face") as err:
        select_face([], where="source image")
    assert "closer" in str(err.value)


def test_onnx_providers_choice():
    cuda = "CUDAExecutionProvider"
    cpu = "CPUExecutionProvider"
    assert onnx_providers(available=[cuda, cpu]) == ([cuda, cpu], None)
    assert onnx_providers(available=[cpu], cuda_present=False) == ([cpu], None)
    providers, warning = onnx_providers(available=[cpu], cuda_present=True,
                                        installed=["onnxruntime", "onnxruntime-gpu"])
    assert providers == [cpu] and "shadows" in warning and "pip uninstall" in warning
    providers, warning = onnx_providers(available=[cpu], cuda_present=True, installed=["onnxruntime"])
    assert providers == [cpu] and "onnxruntime-gpu" in warning
