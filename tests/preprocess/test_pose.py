"""DWPose: alignment invariants, OpenPose rendering colours, JSON keypoints, SimCC/YOLOX decoding and the
two-model ONNX pipeline on stub models made here."""

import json

import numpy as np
import pytest

from fakes import write_constant_onnx
from hp_core.preprocess.dwpose import (decode_simcc, frame_to_crop, input_to_frame, load_dwpose, pose_box,
                                       pose_warp_matrix, poses_from_openpose_json, wholebody_to_openpose)
from hp_core.preprocess.pose_align import COLORS, LIMBS, align_poses, render_pose
from hp_core.preprocess.prepare import skeleton_images


def _body(points):
    body = np.zeros((18, 3))
    for i, (x, y) in points.items():
        body[i] = (x, y, 1.0)
    return body


SOURCE = _body({0: (100, 100), 1: (100, 150), 2: (70, 150), 3: (60, 200), 5: (130, 150), 6: (140, 200),
                14: (92, 92), 15: (108, 92), 16: (84, 96), 17: (116, 96)})
# driving person: twice as tall in the neck, wider shoulders, elsewhere in the frame
DRIVE0 = _body({0: (300, 300), 1: (300, 400), 2: (240, 400), 3: (240, 440), 5: (350, 400), 6: (360, 480),
                14: (290, 290), 15: (310, 290), 16: (280, 295), 17: (320, 295)})


def _length(body, a, b):
    return float(np.linalg.norm(body[a, :2] - body[b, :2]))


def test_aligned_first_frame_has_source_nose_and_bone_lengths():
    out = align_poses(SOURCE, [DRIVE0], cross=False)[0]
    np.testing.assert_allclose(out[0, :2], SOURCE[0, :2])
    for a, b in LIMBS:
        if SOURCE[a, 2] and SOURCE[b, 2]:
            assert _length(out, a, b) == pytest.approx(_length(SOURCE, a, b)), (a, b)
    # directions stay the driving ones: right elbow hangs straight down from the shoulder
    assert out[3, 0] == pytest.approx(out[2, 0])


def test_later_frames_keep_driving_motion_scaled_by_bone_ratios():
    drive1 = DRIVE0.copy()
    drive1[:, :2] += (10, -4)                     # whole body moves
    drive1[3, :2] = drive1[2, :2] + (0, 80)       # right forearm twice as long as in frame 0
    out = align_poses(SOURCE, [DRIVE0, drive1], cross=False)
    np.testing.assert_allclose(out[1, 0, :2], SOURCE[0, :2] + (10, -4))   # nose follows the driving offset
    ratio = _length(SOURCE, 2, 3) / _length(DRIVE0, 2, 3)
    assert _length(out[1], 2, 3) == pytest.approx(80 * ratio)
    assert _length(out[1], 0, 1) == pytest.approx(_length(SOURCE, 0, 1))


def test_cross_mode_drops_eyes_and_their_edges():
    out = align_poses(SOURCE, [DRIVE0], cross=True)[0]
    assert out[14, 2] == 0 and out[15, 2] == 0
    assert out[16, 2] > 0 and out[0, 2] > 0
    same = align_poses(SOURCE, [DRIVE0], cross=False)[0]
    assert same[14, 2] > 0
    img_cross = render_pose(out, 512, 512)
    img_self = render_pose(same, 512, 512)
    # limb 13 (nose -> right eye) is drawn only with eyes
    mid = ((out[0, :2] + same[14, :2]) / 2).astype(int)
    eye_colour = [int(c * 0.6) for c in COLORS[13]]
    assert img_self[mid[1], mid[0]].tolist() == eye_colour
    assert img_cross[mid[1], mid[0]].tolist() != eye_colour


def test_missing_nose_falls_back_to_neck_root():
    src = SOURCE.copy()
    src[0, 2] = 0
    out = align_poses(src, [DRIVE0], cross=False)[0]
    np.testing.assert_allclose(out[1, :2], src[1, :2])
    assert _length(out, 1, 2) == pytest.approx(_length(src, 1, 2))


def test_render_draws_limbs_in_openpose_colours():
    body = _body({1: (100, 100), 2: (160, 100), 5: (40, 100), 8: (100, 200)})
    img = render_pose(body, 256, 256)
    assert img.shape == (256, 256, 3) and img.dtype == np.uint8
    # limb 0 neck->right shoulder, limb 1 neck->left shoulder, limb 6 neck->right hip; limbs at 60 %
    assert img[100, 130].tolist() == [153, 0, 0]
    assert img[100, 70].tolist() == [153, 51, 0]
    assert img[150, 100].tolist() == [0, 153, 0]
    # joints at full colour
    assert img[100, 100].tolist() == list(COLORS[1])
    assert img[100, 160].tolist() == list(COLORS[2])
    # nothing where no limb is
    assert img[220, 30].tolist() == [0, 0, 0]
    # a limb with an invisible end is not drawn
    body[8, 2] = 0.2
    assert render_pose(body, 256, 256)[150, 100].tolist() == [0, 0, 0]


def test_skeleton_images_shape():
    imgs = skeleton_images(SOURCE, [DRIVE0, DRIVE0], size=256)
    assert imgs.shape == (2, 256, 256, 3) and imgs.any()


# ---- OpenPose JSON ---------------------------------------------------------------------------

def test_openpose_json_pixels_and_normalised():
    flat = [0.0] * 54
    flat[0:3] = [50, 40, 1.0]       # nose
    flat[3:6] = [50, 80, 1.0]       # neck
    frame = {"people": [{"pose_keypoints_2d": flat}], "canvas_width": 200, "canvas_height": 100}
    (body, wh), = poses_from_openpose_json(json.dumps([frame]))
    assert wh == (200, 100)
    np.testing.assert_allclose(body[0], [50, 40, 1.0])
    norm = list(flat)
    norm[0:6] = [0.25, 0.4, 1.0, 0.25, 0.8, 1.0]
    (body2, _), = poses_from_openpose_json({"people": [{"pose_keypoints_2d": norm}],
                                            "canvas_width": 200, "canvas_height": 100})
    np.testing.assert_allclose(body2[:2, :2], [[50, 40], [50, 80]])
    (empty, _), = poses_from_openpose_json([{"people": [], "canvas_width": 10, "canvas_height": 10}])
    assert not empty[:, 2].any()


def test_frame_to_crop():
    body = _body({0: (150, 105)})
    out = frame_to_crop(body, (100, 55, 250, 205), 512)
    np.testing.assert_allclose(out[0, :2], [50 * 512 / 150, 50 * 512 / 150])
    half = frame_to_crop(_body({0: (75, 52.5)}), (100, 55, 250, 205), 512, canvas_wh=(200, 150), frame_wh=(400, 300))
    np.testing.assert_allclose(half[0, :2], out[0, :2])


# ---- DWPose decoding -------------------------------------------------------------------------

def test_simcc_decoding():
    sx = np.zeros((3, 576))
    sy = np.zeros((3, 768))
    sx[0, 100], sy[0, 301] = 0.9, 0.7
    sx[1, 5], sy[1, 7] = 0.2, 0.6
    pts, scores = decode_simcc(sx, sy)
    np.testing.assert_allclose(pts[0], [50, 150.5])
    np.testing.assert_allclose(scores[:2], [0.7, 0.2])       # the smaller of the two maxima
    np.testing.assert_allclose(pts[2], [-0.5, -0.5])         # no response
    assert scores[2] == 0


def test_pose_box_and_warp_round_trip():
    center, size = pose_box((84, 12, 180, 204))
    np.testing.assert_allclose(center, [132, 108])
    np.testing.assert_allclose(size, [180, 240])            # 1.25 x (96, 192), widened to 3:4
    m = pose_warp_matrix(center, size)
    np.testing.assert_allclose(m @ [132, 108, 1], [144, 192])
    np.testing.assert_allclose(m @ [42, -12, 1], [0, 0], atol=1e-9)   # region corner -> input corner
    np.testing.assert_allclose(input_to_frame(np.array([[0.0, 0.0], [288, 384]]), center, size),
                               [[42, -12], [222, 228]])


def test_wholebody_to_openpose_mapping():
    pts = np.arange(133 * 2, dtype=float).reshape(133, 2)
    scores = np.full(133, 0.9)
    body = wholebody_to_openpose(pts, scores)
    np.testing.assert_allclose(body[0, :2], pts[0])          # nose
    np.testing.assert_allclose(body[2, :2], pts[6])          # right shoulder
    np.testing.assert_allclose(body[5, :2], pts[5])          # left shoulder
    np.testing.assert_allclose(body[14, :2], pts[2])         # right eye
    np.testing.assert_allclose(body[17, :2], pts[3])         # left ear
    np.testing.assert_allclose(body[1], [*(pts[5] + pts[6]) / 2, 1.0])
    scores[6] = 0.1
    assert wholebody_to_openpose(pts, scores)[1, 2] == 0.0


def test_dwpose_pipeline_on_stub_models(tmp_path):
    det = np.zeros((1, 8400, 85))
    det[..., 4] = 0.0
    # stride 32 cell (5, 4): index 6400 + 1600 + 4 * 20 + 5; centre (176, 144), size 128 x 256 in the letterbox
    det[0, 8085, :6] = [0.5, 0.5, np.log(4), np.log(8), 0.9, 0.9]
    simcc_x = np.zeros((1, 133, 576))
    simcc_y = np.zeros((1, 133, 768))
    simcc_x[0, 0, 288], simcc_y[0, 0, 384] = 0.9, 0.8       # nose at the region centre
    simcc_x[0, 5, 400], simcc_y[0, 5, 500] = 0.9, 0.9       # left shoulder
    simcc_x[0, 6, 176], simcc_y[0, 6, 500] = 0.9, 0.9       # right shoulder
    write_constant_onnx(tmp_path / "yolox_l.onnx", "images", [1, 3, 640, 640], [det])
    write_constant_onnx(tmp_path / "dw.onnx", "input", [1, 3, 384, 288], [simcc_x, simcc_y])
    est = load_dwpose(tmp_path / "yolox_l.onnx", tmp_path / "dw.onnx", ["CPUExecutionProvider"])
    # 320x480 frame: letterbox ratio 4/3, person box (112,16,240,272)/ratio = (84,12,180,204)
    # pose region: centre (132,108), size (180,240); bin b -> b/2 / (288,384) * size + centre - size/2
    body = est.estimate(np.zeros((320, 480, 3), np.uint8))
    np.testing.assert_allclose(body[0], [132, 108, 0.8], atol=1e-4)
    np.testing.assert_allclose(body[5, :2], [167, 144.25], atol=1e-4)
    np.testing.assert_allclose(body[2, :2], [97, 144.25], atol=1e-4)
    np.testing.assert_allclose(body[1], [132, 144.25, 1.0], atol=1e-4)
    assert body[8, 2] == 0


def test_dwpose_stand_ins_pass_the_structure_check_the_real_files_must_pass(tmp_path):
    """The ONNX stand-ins the node and server tests run on have the real files' signature: the same check
    that verifies a downloaded yolox_l.onnx / dw-ll_ucoco_384.onnx accepts them, and refuses them swapped."""
    from fakes import write_fake_dwpose

    from hp_core.weights.structure import check_onnx, onnx_signature

    folder = write_fake_dwpose(tmp_path)
    det, pose = folder / "yolox_l.onnx", folder / "dw-ll_ucoco_384.onnx"
    assert check_onnx("dwpose_det", det) is None and check_onnx("dwpose_pose", pose) is None
    assert check_onnx("dwpose_pose", det) is not None  # one output and a 640x640 input: not the pose model
    (name, dims), = onnx_signature(det)[0]
    assert (name, dims) == ("images", [1, 3, 640, 640])
    assert [d for _, d in onnx_signature(det)[1]] == [[1, 8400, 85]]
    assert [d for _, d in onnx_signature(pose)[1]] == [[1, 133, 576], [1, 133, 768]]
