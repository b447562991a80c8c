"""ArcFace: similarity alignment onto the 112x112 template, and the embedding call on a small ONNX model
whose input is named `data`."""

import math

import numpy as np
import pytest

from hp_core.errors import HPError
from hp_core.preprocess.identity import (ARCFACE_TEMPLATE, align_arcface, load_arcface, no_identity,
                                         similarity_transform, warp_bilinear)


def _similar(points, scale, degrees, shift):
    a = math.radians(degrees)
    rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    return points @ (scale * rot).T + np.asarray(shift)


def _apply(m, pts):
    return pts @ m[:2, :2].T + m[:2, 2]


def test_similarity_maps_landmarks_onto_template():
    marks = _similar(ARCFACE_TEMPLATE, 3.7, 17.0, (100, 150))
    m = similarity_transform(marks, ARCFACE_TEMPLATE)
    assert np.abs(_apply(m, marks) - ARCFACE_TEMPLATE).max() < 1e-6
    # it is a similarity: equal singular values, no reflection
    sv = np.linalg.svd(m[:2, :2], compute_uv=False)
    assert sv[0] == pytest.approx(sv[1]) and sv[0] == pytest.approx(1 / 3.7)
    assert np.linalg.det(m[:2, :2]) > 0


def test_similarity_with_noisy_landmarks_stays_within_a_pixel():
    rng = np.random.default_rng(3)
    marks = _similar(ARCFACE_TEMPLATE, 2.0, -8.0, (40, 60)) + rng.normal(0, 0.6, (5, 2))
    m = similarity_transform(marks, ARCFACE_TEMPLATE)
    assert np.linalg.norm(_apply(m, marks) - ARCFACE_TEMPLATE, axis=1).max() < 1.0


def test_similarity_never_reflects():
    mirrored = ARCFACE_TEMPLATE * np.array([-1, 1]) + np.array([200, 0])
    m = similarity_transform(mirrored, ARCFACE_TEMPLATE)
    assert np.linalg.det(m[:2, :2]) > 0


def test_aligned_image_puts_the_nose_on_the_template_nose():
    marks = _similar(ARCFACE_TEMPLATE, 4.0, 10.0, (30, 20))
    img = np.zeros((512, 512, 3), np.uint8)
    nx, ny = np.rint(marks[2]).astype(int)
    img[ny - 2:ny + 3, nx - 2:nx + 3] = 255
    aligned = align_arcface(img, marks)
    assert aligned.shape == (112, 112, 3) and aligned.max() <= 1.0
    y, x = np.unravel_index(np.argmax(aligned[..., 0]), aligned.shape[:2])
    assert abs(x - ARCFACE_TEMPLATE[2, 0]) <= 1.0 and abs(y - ARCFACE_TEMPLATE[2, 1]) <= 1.0


def test_warp_bilinear_identity_and_zero_outside():
    img = np.arange(12, dtype=float).reshape(3, 4, 1)
    np.testing.assert_allclose(warp_bilinear(img, np.eye(3), (3, 4)), img)
    shift = np.eye(3)
    shift[0, 2] = 0.5   # output x = input x + 0.5: output pixel 0 reads input x -0.5 (half zero)
    out = warp_bilinear(img, shift, (3, 4))
    assert out[0, 0, 0] == pytest.approx(0.0)
    assert out[1, 1, 0] == pytest.approx((4 + 5) / 2)
    assert out[1, 0, 0] == pytest.approx(0.5 * 4)   # blended with the zero outside, as skimage does
    far = np.eye(3)
    far[0, 2] = 100
    assert warp_bilinear(img, far, (3, 4)).max() == 0


def _arcface_onnx(path, weight):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes = [helper.make_node("ReduceMean", ["data"], ["m"], axes=[2, 3], keepdims=0),
             helper.make_node("MatMul", ["m", "w"], ["emb"])]
    graph = helper.make_graph(nodes, "arcface_stub",
                              [helper.make_tensor_value_info("data", TensorProto.FLOAT, [1, 3, 112, 112])],
                              [helper.make_tensor_value_info("emb", TensorProto.FLOAT, [1, 512])],
                              [numpy_helper.from_array(weight.astype(np.float32), "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))


def test_embedding_runs_on_onnx_with_input_named_data(tmp_path):
    rng = np.random.default_rng(0)
    weight = rng.normal(size=(3, 512))
    path = tmp_path / "arcface.onnx"
    _arcface_onnx(path, weight)
    arc = load_arcface(path, ["CPUExecutionProvider"])
    assert arc.input_name == "data"
    crop = np.zeros((512, 512, 3), np.uint8)
    crop[...] = (200, 100, 50)
    marks = _similar(ARCFACE_TEMPLATE, 3.0, 5.0, (90, 80))   # the 112 window lies well inside the crop
    emb = arc.embed(crop, marks)
    # every aligned pixel is (200,100,50)/255, so the stub outputs that colour times the weight
    expected = (np.array([200, 100, 50]) / 255.0) @ weight
    expected /= np.linalg.norm(expected)
    assert emb.shape == (512,) and emb.dtype == np.float32
    np.testing.assert_allclose(emb, expected, atol=1e-5)
    assert np.linalg.norm(emb) == pytest.approx(1.0, abs=1e-5)


def test_disabled_identity_and_missing_file(tmp_path):
    z = no_identity()
    assert z.shape == (512,) and z.dtype == np.float32 and not z.any()
    with pytest.raises(HPError, match="does not exist"):
        load_arcface(tmp_path / "nope.onnx", ["CPUExecutionProvider"])
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"junk")
    with pytest.raises(HPError, match="could not be opened"):
        load_arcface(junk, ["CPUExecutionProvider"])
