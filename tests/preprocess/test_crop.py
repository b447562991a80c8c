"""Crop arithmetic against hand-computed boxes (border cases included), motion crops, tensor layouts,
and image normalisation of odd inputs."""

import numpy as np
import pytest
import torch
from PIL import Image

from hp_core.errors import HPError
from hp_core.preprocess.crop import (appearance_input, crop_resize, crop_zero_padded, motion_crop_window,
                                     motion_face_box, motion_face_crop, portrait_crop_box, square_crop_box,
                                     to_crop_coords, to_signed_tensor, to_unit_tensor)
from hp_core.preprocess.image import to_rgb_uint8


# ---- square crop box (release: expand 1x, clip, square, shift to face, round) -----------------

def test_square_box_inside_image():
    # face 100x120 -> expanded (300,180,600,540): w 300 < h 360, face centred -> no shift, side 300
    assert square_crop_box((400, 300, 500, 420), 800, 1000) == (300, 210, 600, 510)


def test_square_box_touching_top_border():
    # expanded y1 = 50 - 120 -> clipped to 0: box (300,0,600,290); w 300 >= h 290 -> side 290, x centred
    assert square_crop_box((400, 50, 500, 170), 800, 1000) == (305, 0, 595, 290)


def test_square_box_touching_left_border():
    # expanded x1 = -100 -> 0: (0,200,200,500); side 200 centred on y 350
    assert square_crop_box((0, 300, 100, 400), 800, 1000) == (0, 250, 200, 450)


def test_square_box_shift_limited_to_half_difference():
    # face (450,20,550,220): expanded (350,0,650,420) after clipping; w 300 < h 420, slack 60;
    # face centre y 120 is 90 above the box centre 210 -> shift capped at 60 -> centre 150
    assert square_crop_box((450, 20, 550, 220), 800, 1000) == (350, 0, 650, 300)


def test_square_box_rounds_half_to_even():
    # face (10.5,10.5,13.5,13.5) -> expanded (7.5,7.5,16.5,16.5): Python round -> 8 and 16
    assert square_crop_box((10.5, 10.5, 13.5, 13.5), 100, 100) == (8, 8, 16, 16)


def test_square_box_pad_mode_keeps_face_centred():
    # unclipped expanded box (-100,200,200,500) is already square
    assert square_crop_box((0, 300, 100, 400), 800, 1000, clip=False) == (-100, 200, 200, 500)


def test_auto_edge_mode_pads_only_when_the_release_box_cuts_the_face():
    # tall face at the left edge: release box (0,40,40,220) -> side 40 around y 130 cuts the face (100..160)
    assert square_crop_box((0, 100, 20, 160), 400, 400) == (0, 110, 40, 150)
    # auto: unclipped (-20,40,40,220), side 60 centred on the face -> face kept whole, left part padded
    assert portrait_crop_box((0, 100, 20, 160), 400, 400) == (-20, 100, 40, 160)
    # a cut of under a tenth of the face (4 px of 60 at top and bottom) keeps the release's framing
    assert square_crop_box((0, 100, 26, 160), 400, 400) == (0, 104, 52, 156)
    assert portrait_crop_box((0, 100, 26, 160), 400, 400) == (0, 104, 52, 156)
    # an ordinary border face keeps the release box
    assert portrait_crop_box((0, 300, 100, 400), 800, 1000) == (0, 250, 200, 450)
    assert portrait_crop_box((0, 300, 100, 400), 800, 1000, "pad") == (-100, 200, 200, 500)
    assert portrait_crop_box((0, 100, 20, 160), 400, 400, "clip") == (0, 110, 40, 150)
    with pytest.raises(HPError):
        portrait_crop_box((0, 0, 1, 1), 10, 10, "stretch")


def test_crop_resize_pads_outside_with_black():
    img = np.full((40, 40, 3), 200, np.uint8)
    out = crop_resize(img, (-20, 0, 20, 40), 40, resample=Image.NEAREST)
    assert out.shape == (40, 40, 3)
    assert out[:, :20].max() == 0 and out[:, 20:].min() == 200


def test_crop_resize_is_pil_bicubic():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (64, 80, 3), dtype=np.uint8)
    expected = np.asarray(Image.fromarray(img).crop((5, 3, 55, 53)).resize((32, 32), Image.BICUBIC))
    np.testing.assert_array_equal(crop_resize(img, (5, 3, 55, 53), 32), expected)


# ---- motion face crop (0.45 rule, int() truncation, zero padding) ----------------------------

def test_motion_face_box_and_window_by_hand():
    marks = np.array([[40, 50], [60, 50], [50, 60], [42, 70], [58, 70]], float)
    box = motion_face_box(marks, (30, 35, 70, 85))
    np.testing.assert_allclose(box, [35.5, 43.25, 64.5, 76.75])
    # centre (50, 60); half = int(33.5) // 2 = 16
    assert motion_crop_window(box) == (34, 44, 66, 76)


def test_motion_window_truncates_towards_zero():
    # centre x = int(-0.5) = 0 (not -1), half = int(10) // 2 = 5
    assert motion_crop_window((-3, 0, 2, 10)) == (-5, 0, 5, 10)


def test_motion_crop_zero_padding_at_corner():
    img = np.full((50, 50, 3), 255, np.uint8)
    marks = np.array([[-5, -5], [5, -5], [0, 0], [-4, 6], [4, 6]], float)
    # box (-11.75,-11.75,11.75,12.3): centre (0, 0), half int(24.05)//2 = 12 -> window (-12,-12,12,12)
    window = motion_crop_window(motion_face_box(marks, (-20, -20, 20, 20)))
    assert window == (-12, -12, 12, 12)
    patch = crop_zero_padded(img, window)
    assert patch.shape == (24, 24, 3)
    assert patch[:12].max() == 0 and patch[:, :12].max() == 0 and patch[12:, 12:].min() == 255
    crop = motion_face_crop(img, marks, (-20, -20, 20, 20))
    assert crop.shape == (256, 256, 3)
    assert crop[:100, :100].max() == 0 and crop[160:, 160:].min() == 255


def test_crop_zero_padded_window_fully_outside():
    img = np.full((10, 10, 3), 9, np.uint8)
    assert crop_zero_padded(img, (20, 20, 30, 30)).max() == 0


# ---- tensors ---------------------------------------------------------------------------------

def test_tensor_layouts_and_ranges():
    frames = np.zeros((2, 4, 6, 3), np.uint8)
    frames[0, 0, 0] = (255, 0, 51)
    unit = to_unit_tensor(frames)
    assert unit.shape == (2, 3, 4, 6) and unit.dtype == torch.float32
    assert unit[0, :, 0, 0].tolist() == pytest.approx([1.0, 0.0, 0.2])
    signed = to_signed_tensor(frames[0])
    assert signed.shape == (3, 4, 6)
    assert signed[:, 0, 0].tolist() == pytest.approx([1.0, -1.0, -0.6])
    assert float(signed[0, 1, 1]) == -1.0


def test_appearance_input_normalisation():
    crop = np.zeros((512, 512, 3), np.uint8)
    crop[...] = (255, 128, 0)
    x = appearance_input(crop)
    assert x.shape == (1, 3, 224, 224)
    assert float(x[0, 0, 100, 100]) == pytest.approx((1.0 - 0.485) / 0.229, abs=1e-5)
    assert float(x[0, 1, 100, 100]) == pytest.approx((128 / 255 - 0.456) / 0.224, abs=1e-5)
    assert float(x[0, 2, 100, 100]) == pytest.approx((0.0 - 0.406) / 0.225, abs=1e-5)


def test_appearance_input_is_antialiased():
    # one-pixel stripes average to grey with antialiasing; a plain bilinear resize would alias them
    crop = np.zeros((512, 512, 3), np.uint8)
    crop[:, ::2] = 255
    x = appearance_input(crop) * 0.229 + 0.485
    assert float(x[0, 0].std()) < 0.05 and float(x[0, 0].mean()) == pytest.approx(0.5, abs=0.02)


def test_to_crop_coords():
    pts = np.array([[100, 50], [250, 205]], float)
    np.testing.assert_allclose(to_crop_coords(pts, (100, 55, 250, 205), 512),
                               [[0, -5 * 512 / 150], [512, 512]])


# ---- image normalisation ---------------------------------------------------------------------

def test_pil_modes():
    rgb = to_rgb_uint8(Image.new("L", (5, 4), 77))
    assert rgb.shape == (4, 5, 3) and rgb.dtype == np.uint8 and (rgb == 77).all()
    rgba = to_rgb_uint8(Image.new("RGBA", (3, 2), (10, 20, 30, 0)))
    assert rgba.shape == (2, 3, 3) and rgba[0, 0].tolist() == [10, 20, 30]   # alpha dropped, colour kept
    pal = Image.new("P", (3, 3))
    pal.putpalette([0, 0, 0, 200, 100, 50] + [0] * 762)
    pal.putpixel((1, 1), 1)
    out = to_rgb_uint8(pal)
    assert out[1, 1].tolist() == [200, 100, 50] and out[0, 0].tolist() == [0, 0, 0]
    cmyk = to_rgb_uint8(Image.new("CMYK", (2, 2), (0, 0, 0, 0)))
    assert cmyk[0, 0].tolist() == [255, 255, 255]
    one_bit = to_rgb_uint8(Image.new("1", (2, 2), 1))
    assert one_bit[0, 0].tolist() == [255, 255, 255]


def test_sixteen_bit_and_float_pil():
    arr16 = np.array([[0, 257 * 100, 65535]], np.uint16)
    out = to_rgb_uint8(Image.fromarray(arr16))
    assert out[0, :, 0].tolist() == [0, 100, 255]
    fl = to_rgb_uint8(Image.fromarray(np.array([[0.0, 0.5, 1.0]], np.float32), mode="F"))
    assert fl[0, :, 0].tolist() == [0, 128, 255]


def test_numpy_and_torch_inputs():
    assert to_rgb_uint8(np.full((2, 2, 1), 9, np.uint8))[0, 0].tolist() == [9, 9, 9]
    assert to_rgb_uint8(np.full((2, 2, 2), 9, np.uint8))[0, 0].tolist() == [9, 9, 9]      # grey + alpha
    assert to_rgb_uint8(np.full((2, 2, 4), 9, np.uint8)).shape == (2, 2, 3)
    assert to_rgb_uint8(np.ones((2, 2), bool))[0, 0].tolist() == [255, 255, 255]
    comfy = torch.rand(1, 3, 4, 3)                     # ComfyUI IMAGE: B H W C in [0, 1]
    out = to_rgb_uint8(comfy)
    assert out.shape == (3, 4, 3)
    np.testing.assert_array_equal(out, np.rint(comfy[0].numpy() * 255).astype(np.uint8))
    assert to_rgb_uint8(np.array([[[0.0, 127.6, 300.0]]], np.float64))[0, 0].tolist() == [0, 128, 255]
    # a unit-range image that overshoots 1.0 after an unclamped bicubic upscale stays unit-range
    over = np.full((4, 4, 3), 0.45, np.float32)
    over[0, 0] = 1.087
    got = to_rgb_uint8(over)
    assert got[1, 1].tolist() == [115, 115, 115] and got[0, 0].tolist() == [255, 255, 255]
    nan = to_rgb_uint8(np.array([[[np.nan, 0.5, 1.0]]], np.float32))
    assert nan[0, 0].tolist() == [0, 128, 255]
    half = to_rgb_uint8(torch.ones(2, 2, 3, dtype=torch.float16))
    assert half[0, 0].tolist() == [255, 255, 255]


def test_large_sixteen_bit_converted_in_chunks():
    arr = np.zeros((600, 7, 3), np.uint16)
    arr[::3] = 65535
    arr[1::3] = 257 * 3
    out = to_rgb_uint8(arr)
    assert out[0, 0, 0] == 255 and out[1, 0, 0] == 3 and out[2, 0, 0] == 0 and out[599, 6, 2] == 0
    assert out[597, 6, 2] == 255 and out[598, 0, 0] == 3


def test_bad_shapes_raise_hperror():
    with pytest.raises(HPError):
        to_rgb_uint8(np.zeros((2, 2, 5), np.uint8))
    with pytest.raises(HPError):
        to_rgb_uint8(np.zeros((0, 4, 3), np.uint8))
