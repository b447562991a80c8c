"""Video and image I/O on synthetic clips made with ffmpeg's own sources (testsrc, sine).

Results are probed with the ffmpeg binary directly (frame count by decoding, fps and streams from
its stream description), not with the functions under test.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from helpers import read_video, write_video
from hp_core import video as V
from hp_core.errors import HPError
from hp_core.preprocess.image import read_image_file

imageio_ffmpeg = pytest.importorskip("imageio_ffmpeg")
FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()


def ffmpeg(*args: str) -> str:
    proc = subprocess.run([FFMPEG, "-hide_banner", *args], capture_output=True, text=True)
    return proc.stderr


def make_clip(path: Path, *, seconds=2, rate="10", size="64x48", audio=True) -> Path:
    args = ["-y", "-f", "lavfi", "-i", f"testsrc=size={size}:rate={rate}"]
    if audio:
        args += ["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=16000"]
    args += ["-t", str(seconds), "-c:v", "libx264", "-pix_fmt", "yuv420p"]
    if audio:
        args += ["-c:a", "aac"]
    ffmpeg(*args, str(path))
    assert path.is_file()
    return path


def decoded_frames(path: Path) -> int:
    out = ffmpeg("-i", str(path), "-map", "0:v:0", "-f", "null", "-")
    return int(re.findall(r"frame=\s*(\d+)", out)[-1])


def audio_seconds(path: Path) -> float | None:
    out = ffmpeg("-i", str(path), "-map", "0:a:0", "-f", "null", "-")
    times = re.findall(r"time=(\d+):(\d+):([\d.]+)", out)
    if "Audio:" not in out or not times:
        return None
    h, m, s = times[-1]
    return int(h) * 3600 + int(m) * 60 + float(s)


def stream_fps(path: Path) -> float:
    out = ffmpeg("-i", str(path))
    return float(re.search(r"Video: .*?([\d.]+) fps", out).group(1))


def stream_size(path: Path) -> tuple[int, int]:
    out = ffmpeg("-i", str(path))
    m = re.search(r"Video: .*?, (\d+)x(\d+)", out)
    return int(m.group(1)), int(m.group(2))


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return make_clip(tmp_path_factory.mktemp("clips") / "driving.mp4")


@pytest.fixture(scope="module")
def silent_clip(tmp_path_factory) -> Path:
    return make_clip(tmp_path_factory.mktemp("clips") / "silent.mp4", rate="25/2", seconds=1, audio=False)


def test_probe_and_iter_frames(clip):
    info = V.probe_video(clip)
    assert (info.width, info.height) == (64, 48) and info.fps == pytest.approx(10.0) and info.has_audio
    assert info.frames_estimate == 20
    frames = list(V.iter_frames(clip))
    assert len(frames) == decoded_frames(clip) == 20
    assert frames[0].shape == (48, 64, 3) and frames[0].dtype == np.uint8
    assert not np.array_equal(frames[0], frames[10])  # testsrc moves


def test_iter_frames_max_frames(clip):
    assert len(list(V.iter_frames(clip, max_frames=5))) == 5


def test_fractional_fps_and_no_audio(silent_clip):
    info = V.probe_video(silent_clip)
    assert info.fps == pytest.approx(12.5) and not info.has_audio
    assert len(list(V.iter_frames(silent_clip))) == decoded_frames(silent_clip)


def test_write_round_trip_with_audio_trimmed(clip, tmp_path):
    frames = read_video(clip).frames[:15]
    out = write_video(tmp_path / "out" / "result.mp4", frames, 10.0, audio=clip)
    assert decoded_frames(out) == 15
    assert stream_fps(out) == pytest.approx(10.0)
    assert "Audio:" in ffmpeg("-i", str(out))
    assert audio_seconds(out) == pytest.approx(1.5, abs=0.08)  # cut to the video, not the clip's 2 s
    back = read_video(out)
    assert np.abs(back.frames.astype(int) - frames.astype(int)).mean() < 12


def test_write_without_audio_and_from_silent_source(silent_clip, tmp_path):
    frames = np.zeros((4, 16, 16, 3), np.uint8)
    a = write_video(tmp_path / "a.mp4", frames, 12.5)
    b = write_video(tmp_path / "b.mp4", frames, 12.5, audio=silent_clip)
    for path in (a, b):
        assert decoded_frames(path) == 4 and "Audio:" not in ffmpeg("-i", str(path))
        assert stream_fps(path) == pytest.approx(12.5)


def test_write_pads_odd_sizes_and_keeps_pixels(tmp_path):
    yy, xx = np.mgrid[0:47, 0:63]
    gray = (xx * 3 + yy * 2) / (62 * 3 + 46 * 2)
    frames = np.repeat(np.stack([gray, gray[::-1], gray[:, ::-1]], -1)[None], 3, axis=0).astype(np.float32)
    out = write_video(tmp_path / "odd.mp4", frames, 8, crf=0)
    assert stream_size(out) == (64, 48)
    back = read_video(out).frames.astype(np.float32) / 255
    assert back.shape == (3, 48, 64, 3)
    assert np.abs(back[:, :47, :63] - frames).mean() < 0.02
    assert np.abs(back[:, :47, 63] - frames[:, :, 62]).mean() < 0.03  # edge-replicated padding


def test_bad_inputs_give_clear_errors(tmp_path):
    with pytest.raises(HPError, match="does not exist"):
        V.probe_video(tmp_path / "nope.mp4")
    fake = tmp_path / "fake.mp4"
    fake.write_text("not a video")
    with pytest.raises(HPError, match="could not be read as a video"):
        V.probe_video(fake)
    with pytest.raises(HPError, match="could not be read as a video"):
        next(V.iter_frames(fake))
    with pytest.raises(HPError, match="could not be read as an image"):
        read_image_file(fake)
    with pytest.raises(HPError, match="positive"):
        V.VideoWriter(tmp_path / "x.mp4", 0)
    with pytest.raises(HPError, match="laid out"):
        with V.VideoWriter(tmp_path / "x.mp4", 10) as writer:
            writer.write(np.zeros((8, 8)))
    assert not list(tmp_path.glob("*x*.mp4"))  # the failed writer left nothing behind


def test_read_image_orientation_and_transparency(tmp_path):
    rgba = np.zeros((10, 20, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[:, :10, 3] = 255  # left half opaque red, right half transparent
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    img = read_image_file(tmp_path / "a.png")
    assert img.shape == (10, 20, 3) and img.dtype == np.uint8
    assert tuple(img[5, 2]) == (200, 0, 0) and tuple(img[5, 15]) == (255, 255, 255)

    wide = Image.new("RGB", (40, 20), (10, 20, 30))
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    wide.save(tmp_path / "rot.jpg", exif=exif.tobytes())
    assert read_image_file(tmp_path / "rot.jpg").shape == (40, 20, 3)


def test_frames_from_torch_float_tensor(tmp_path):
    torch = pytest.importorskip("torch")
    frames = torch.full((2, 8, 8, 3), 0.5)
    out = write_video(tmp_path / "t.mp4", frames, 5, crf=0)
    back = read_video(out).frames
    assert back.shape == (2, 8, 8, 3) and abs(float(back.mean()) - 127.5) < 3
