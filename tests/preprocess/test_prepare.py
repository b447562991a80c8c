"""prepare_inputs end to end with a detector that finds red squares: crop boxes by hand, output layouts,
frames without a face, no face at all, face index, smoothing, ArcFace on, DWPose skeletons on."""

import numpy as np
import pytest
import torch

from hp_core.errors import HPError
from hp_core.preprocess.faces import Face
from hp_core.preprocess.track import fill_missing, smooth_track
from inmemory import prepare_inputs


class RedSquareDetector:
    """Every connected red blob (R > 200, G and B < 60) is a 'face'; landmarks at fixed box fractions."""

    FRACTIONS = np.array([[0.3, 0.35], [0.7, 0.35], [0.5, 0.55], [0.35, 0.75], [0.65, 0.75]])

    def __init__(self):
        self.calls = 0

    def detect(self, image):
        self.calls += 1
        red = (image[..., 0] > 200) & (image[..., 1] < 60) & (image[..., 2] < 60)
        faces = []
        cols = np.flatnonzero(red.any(axis=0))
        if not len(cols):
            return faces
        # split into blobs by gaps between red columns
        groups = np.split(cols, np.flatnonzero(np.diff(cols) > 1) + 1)
        for g in groups:
            rows = np.flatnonzero(red[:, g[0]:g[-1] + 1].any(axis=1))
            box = np.array([g[0], rows[0], g[-1] + 1, rows[-1] + 1], float)
            size = box[2:] - box[:2]
            faces.append(Face(box=box, score=0.9, landmarks=box[:2] + self.FRACTIONS * size))
        return faces


def _image(h, w, rects):
    img = np.full((h, w, 3), 128, np.uint8)
    for x1, y1, x2, y2 in rects:
        img[y1:y2, x1:x2] = (255, 0, 0)
    return img


def _driving(n=6, missing=(2, 3)):
    frames = []
    for t in range(n):
        rects = [] if t in missing else [(100 + 4 * t, 60, 140 + 4 * t, 110)]
        frames.append(_image(240, 320, rects))
    return frames


def test_prepare_inputs_layouts_and_crop_boxes():
    det = RedSquareDetector()
    source = _image(300, 400, [(150, 100, 200, 160)])
    prep = prepare_inputs(source, _driving(), det)
    # face (150,100,200,160) -> expanded (100,40,250,220), w 150 < h 180, centred -> (100,55,250,205)
    assert prep.crop_bbox == (100, 55, 250, 205)
    # first driving face (100,60,140,110) -> expanded (60,10,180,160): w 120 < h 150 -> (60,25,180,145)
    assert prep.driving_crop_box == (60, 25, 180, 145)
    assert prep.source_crop_512.shape == (512, 512, 3) and prep.source_crop_512.dtype == np.uint8
    assert prep.appearance_224.shape == (1, 3, 224, 224)
    assert prep.vae_reference.shape == (1, 3, 512, 512)
    assert float(prep.vae_reference.min()) >= -1 and float(prep.vae_reference.max()) <= 1
    assert prep.identity.shape == (512,) and not prep.identity.any()
    assert prep.num_frames == 6
    assert prep.driven_crops.shape == (6, 512, 512, 3) and prep.pose_images is None
    assert prep.pose_crops.shape == prep.motion_crops.shape == (6, 256, 256, 3)
    assert prep.driving_landmarks.shape == (6, 5, 2)
    # the red square sits where the crop arithmetic says: x from (100-60)*512/120 = 170.7
    red_cols = np.flatnonzero((prep.driven_crops[0][..., 0] > 200).any(axis=0) &
                              (prep.driven_crops[0][..., 1] < 60).any(axis=0))
    assert abs(red_cols[0] - 170.7) <= 2
    # the source landmarks come from the second detection, in 512-crop pixels:
    # the red square maps to ((150-100)*512/150, (100-55)*512/150) .. ((200-100)*512/150, ...)
    assert prep.source_landmarks[2] == pytest.approx([(50 + 0.5 * 50) * 512 / 150, (45 + 0.55 * 60) * 512 / 150],
                                                     abs=3)


def test_frames_without_face_are_interpolated_and_counted():
    det = RedSquareDetector()
    prep = prepare_inputs(_image(300, 400, [(150, 100, 200, 160)]), _driving(), det)
    assert prep.frames_without_face == 2 and prep.missing_frames == [2, 3]
    assert any("2 of 6" in w for w in prep.warnings)
    lm = prep.driving_landmarks
    np.testing.assert_allclose(lm[2], lm[1] + (lm[4] - lm[1]) / 3)
    np.testing.assert_allclose(lm[3], lm[1] + 2 * (lm[4] - lm[1]) / 3)
    # the frame-pixel landmarks move 4 px per frame, so do the crop-pixel ones (x 512/120)
    np.testing.assert_allclose(prep.driving_landmarks_crop[1] - prep.driving_landmarks_crop[0],
                               np.tile([4 * 512 / 120, 0], (5, 1)), atol=1e-9)
    assert prep.intensity(25)[0][0] >= 0 and len(prep.intensity(4)) == 2


def test_leading_missing_frames_use_first_face_for_crop():
    det = RedSquareDetector()
    prep = prepare_inputs(_image(300, 400, [(150, 100, 200, 160)]), _driving(missing=(0,)), det)
    # frame 0 copies frame 1's face (104,60,144,110): expanded (64,10,184,160) -> (64,25,184,145)
    assert prep.driving_crop_box == (64, 25, 184, 145)
    assert prep.frames_without_face == 1


def test_no_face_errors():
    det = RedSquareDetector()
    with pytest.raises(HPError, match="source image") as err:
        prepare_inputs(_image(100, 100, []), _driving(), det)
    assert "closer" in str(err.value)
    with pytest.raises(HPError, match="driving video"):
        prepare_inputs(_image(300, 400, [(150, 100, 200, 160)]), _driving(missing=range(6)), det)


def test_face_index_left_to_right_and_max_frames():
    det = RedSquareDetector()
    source = _image(300, 400, [(20, 100, 60, 150), (200, 100, 280, 180)])
    largest = prepare_inputs(source, _driving(), det, max_frames=2)
    assert largest.num_frames == 2
    # largest: (200,100,280,180) -> expanded (120,20,360,260) square 240 -> (120,20,360,260)
    assert largest.crop_bbox == (120, 20, 360, 260)
    left = prepare_inputs(source, _driving(), det, face_index=0, max_frames=2)
    # leftmost (20,100,60,150) -> expanded (0,50,100,200): w 100 < h 150, slack 25, centred -> (0,75,100,175)
    assert left.crop_bbox == (0, 75, 100, 175)


def test_comfy_tensor_input_and_smoothing():
    det = RedSquareDetector()
    frames = torch.from_numpy(np.stack(_driving(missing=()))).float() / 255   # B H W C in [0, 1]
    plain = prepare_inputs(_image(300, 400, [(150, 100, 200, 160)]), frames, det)
    smooth = prepare_inputs(_image(300, 400, [(150, 100, 200, 160)]), frames, det, smoothing=3)
    # a steady 4 px/frame motion is unchanged by a centred average except at the ends
    np.testing.assert_allclose(smooth.driving_landmarks[1:-1], plain.driving_landmarks[1:-1])
    assert not np.allclose(smooth.driving_landmarks[0], plain.driving_landmarks[0])


def test_pad_edge_mode_keeps_border_face_centred():
    det = RedSquareDetector()
    source = _image(300, 400, [(0, 100, 40, 140)])
    clip = prepare_inputs(source, _driving(), det, max_frames=1)
    pad = prepare_inputs(source, _driving(), det, max_frames=1, edge_mode="pad")
    assert clip.crop_bbox == (0, 80, 80, 160)
    assert pad.crop_bbox == (-40, 60, 80, 180)
    assert pad.source_crop_512[:, :100].max() == 0           # black padding left of the image


def test_arcface_and_pose_estimator_are_used():
    class Arc:
        def embed(self, crop, marks):
            assert crop.shape == (512, 512, 3) and marks.shape == (5, 2)
            v = np.zeros(512, np.float32)
            v[0] = 1
            return v

    class Pose:
        def estimate(self, image):
            body = np.zeros((18, 3))
            body[0] = (256, 200, 1)
            body[1] = (256, 300, 1)
            return body

    det = RedSquareDetector()
    prep = prepare_inputs(_image(300, 400, [(150, 100, 200, 160)]), _driving(), det, arcface=Arc(),
                          pose_estimator=Pose())
    assert prep.identity[0] == 1
    assert prep.pose_images.shape == (6, 512, 512, 3) and prep.pose_images.any()


def test_fill_missing_and_smooth_track_by_hand():
    vals, missing = fill_missing([None, np.array([1.0]), None, None, np.array([4.0]), None])
    assert missing == [0, 2, 3, 5]
    np.testing.assert_allclose(vals[:, 0], [1, 1, 2, 3, 4, 4])
    with pytest.raises(HPError):
        fill_missing([None, None])
    np.testing.assert_allclose(smooth_track(np.array([0, 0, 10, 0, 0.0]), 3), [0, 10 / 3, 10 / 3, 10 / 3, 0])


def test_arcface_given_as_a_bare_session():
    class Session:
        def get_inputs(self):
            return [type("I", (), {"name": "data"})()]

        def run(self, _outputs, feeds):
            assert list(feeds) == ["data"] and feeds["data"].shape == (1, 3, 112, 112)
            return [np.full((1, 512), 3.0, np.float32)]

    prep = prepare_inputs(_image(300, 400, [(150, 100, 200, 160)]), _driving(), RedSquareDetector(),
                          arcface=Session(), max_frames=1)
    np.testing.assert_allclose(prep.identity, np.full(512, 1 / np.sqrt(512)), rtol=1e-5)
