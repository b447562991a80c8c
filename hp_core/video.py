"""Video files: probe and decode a driving clip frame by frame, write an mp4 with the clip's audio.

Everything goes through the ffmpeg binary that the imageio-ffmpeg package ships, so no system ffmpeg
is needed. Frames are numpy uint8 arrays laid out (F, H, W, 3), RGB.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import numpy as np

from .errors import HPError


def ffmpeg_exe() -> str:
    """Path of the ffmpeg binary bundled with imageio-ffmpeg."""
    try:
        import imageio_ffmpeg  # guarded: a missing package gets a message that says what to install
    except ImportError as err:
        raise HPError("Video input/output needs the imageio-ffmpeg package.",
                      hint="Install it with `pip install imageio-ffmpeg` (it ships its own ffmpeg).") from err
    try:
        return imageio_ffmpeg.get_ffmpeg_exe()
    except RuntimeError as err:
        raise HPError(f"No ffmpeg binary found ({err}).",
                      hint="Reinstall imageio-ffmpeg, or set IMAGEIO_FFMPEG_EXE to an ffmpeg binary.") from err


@dataclass
class VideoInfo:
    """What ffmpeg reports about a file before decoding it."""

    width: int
    height: int
    fps: float
    duration: float | None
    has_audio: bool

    @property
    def frames_estimate(self) -> int | None:
        """Frame count from duration x fps (exact for constant frame rate files, close otherwise)."""
        return None if self.duration is None else int(round(self.duration * self.fps))


def _check_file(path: Path, what: str) -> None:
    if not path.exists():
        raise HPError(f"The {what} {path} does not exist.", hint="Check the path.")
    if not path.is_file():
        raise HPError(f"The {what} {path} is not a file.", hint="Give the path of a file.")


def _run(cmd: list[str], *, input_bytes: bytes | None = None,
         timeout: float | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, input=input_bytes, capture_output=True, timeout=timeout, check=False)


def probe_video(path: str | os.PathLike) -> VideoInfo:
    """Size, fps, duration and whether there is audio, from ffmpeg's description of the file."""
    path = Path(path)
    _check_file(path, "video file")
    proc = _run([ffmpeg_exe(), "-hide_banner", "-i", str(path)], timeout=60)
    text = proc.stderr.decode("utf-8", "replace")
    video = re.search(r"Stream #\S+.*?: Video: (.*)", text)
    if video is None:
        raise HPError(f"{path} could not be read as a video ({_last_line(text)}).",
                      hint="Use an mp4/mov/webm/mkv/avi file that plays in a media player.")
    line = video.group(1)
    size = re.search(r"(?<![0-9A-Za-z])(\d{1,5})x(\d{1,5})(?![0-9A-Za-z])", line)
    rate = re.search(r"([\d.]+)(k?) fps", line) or re.search(r"([\d.]+)(k?) tbr", line)
    if size is None or rate is None:
        raise HPError(f"{path} has a video stream ffmpeg cannot describe ({line[:120]}).",
                      hint="Re-encode it, e.g. `ffmpeg -i in -c:v libx264 -pix_fmt yuv420p out.mp4`.")
    width, height = int(size.group(1)), int(size.group(2))
    if re.search(r"rotation of -?90|rotation of -?270", text):
        width, height = height, width  # ffmpeg turns such frames upright when decoding
    fps = float(rate.group(1)) * (1000 if rate.group(2) else 1)
    dur = re.search(r"Duration: (\d+):(\d+):([\d.]+)", text)
    duration = int(dur.group(1)) * 3600 + int(dur.group(2)) * 60 + float(dur.group(3)) if dur else None
    has_audio = re.search(r"Stream #\S+.*?: Audio: ", text) is not None
    return VideoInfo(width, height, fps, duration, has_audio)


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1][:200] if lines else "no output from ffmpeg"


def iter_frames(path: str | os.PathLike, *, max_frames: int | None = None) -> Iterator[np.ndarray]:
    """Decode a video one frame at a time: (H, W, 3) uint8 RGB arrays, at most ``max_frames`` of them.

    Memory stays at one frame whatever the clip's length; call it again to read the clip again.
    """
    import imageio_ffmpeg  # probe_video below has checked it is there (ffmpeg_exe)

    path = Path(path)
    probe_video(path)
    out_params = ["-frames:v", str(int(max_frames))] if max_frames is not None else None
    count = 0
    try:
        gen = imageio_ffmpeg.read_frames(str(path), output_params=out_params)
        width, height = next(gen)["size"]
    except (RuntimeError, OSError, StopIteration, KeyError, ValueError) as err:
        text = str(err).strip().splitlines()
        raise HPError(f"{path} could not be decoded ({text[-1][:200] if text else type(err).__name__}).",
                      hint="Check that the file plays, or re-encode it to H.264 mp4.") from err
    try:
        for raw in gen:
            if len(raw) != width * height * 3:
                break
            count += 1
            yield np.frombuffer(raw, dtype=np.uint8).reshape(height, width, 3)
    except (RuntimeError, OSError) as err:
        text = str(err).strip().splitlines()
        raise HPError(f"{path} could not be decoded ({text[-1][:200] if text else type(err).__name__}).",
                      hint="Check that the file plays, or re-encode it to H.264 mp4.") from err
    finally:
        gen.close()
    if not count:
        raise HPError(f"{path} has no video frames.", hint="Use a video with at least one frame.")


def _to_uint8_frames(frames) -> np.ndarray:
    if hasattr(frames, "detach"):  # a torch tensor (F, H, W, 3), as ComfyUI IMAGE batches are
        frames = frames.detach().cpu().float().numpy()
    frames = np.asarray(frames)
    if frames.ndim == 3:
        frames = frames[None]
    if frames.ndim != 4 or frames.shape[-1] not in (1, 3, 4):
        raise HPError(f"Frames must be laid out (F, H, W, 3); got shape {tuple(frames.shape)}.")
    if frames.shape[-1] == 1:
        frames = np.repeat(frames, 3, axis=-1)
    frames = frames[..., :3]
    if frames.dtype != np.uint8:
        frames = np.clip(np.rint(frames.astype(np.float32) * 255.0), 0, 255).astype(np.uint8)
    return frames


def pad_even(frames: np.ndarray) -> np.ndarray:
    """Frames (N, H, W, C) with odd sides padded by one edge row / column: yuv420p stores chroma at half
    resolution, so H.264 needs even sides; padding keeps every pixel."""
    _, h, w, _ = frames.shape
    if h % 2 == 0 and w % 2 == 0:
        return frames
    return np.pad(frames, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), mode="edge")


class VideoWriter:
    """Frames appended a chunk at a time to an H.264 yuv420p mp4. ffmpeg writes a temporary file in the
    destination folder; ``commit`` renames it into place, so an output is either complete or absent.

    Used as a context manager it commits on success and removes the temporary file on any error or
    interrupt. ``frames`` (when known) cuts the audio at the video's length; otherwise the shorter
    stream ends the file.
    """

    def __init__(self, path: str | os.PathLike, fps: float, *, audio: str | os.PathLike | None = None,
                 frames: int | None = None, crf: int = 18, preset: str = "medium", audio_offset: float = 0.0):
        if not fps or fps <= 0:
            raise HPError(f"The frame rate must be positive (got {fps}).")
        if audio is not None:
            _check_file(Path(audio), "audio source")
        self.path = Path(path)
        self.tmp = self.path.with_name(f".{self.path.stem}.partial-{os.getpid()}-{id(self):x}.mp4")
        self.fps, self.audio, self.frames, self.crf, self.preset = fps, audio, frames, crf, preset
        self.audio_offset = max(float(audio_offset), 0.0)  # seconds of the audio source skipped
        self.count = 0
        self._size: tuple[int, int] | None = None
        self._proc: subprocess.Popen | None = None
        self._log = None
        self._finished = False

    def _start(self, h: int, w: int) -> None:
        rate = Fraction(self.fps).limit_denominator(1001)
        cmd = [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y",
               "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}",
               "-framerate", f"{rate.numerator}/{rate.denominator}", "-i", "-"]
        if self.audio is not None:
            cmd += (["-ss", f"{self.audio_offset:.6f}"] if self.audio_offset else []) + ["-i", str(self.audio)]
        cmd += ["-map", "0:v:0"]
        if self.audio is not None:
            cmd += ["-map", "1:a:0?", "-c:a", "aac", "-b:a", "192k"]
            cmd += ["-t", f"{self.frames / float(rate):.6f}"] if self.frames else ["-shortest"]
        cmd += ["-c:v", "libx264", "-pix_fmt", "yuv420p", "-crf", str(int(self.crf)), "-preset", self.preset,
                "-movflags", "+faststart", "-f", "mp4", str(self.tmp)]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._log = tempfile.TemporaryFile()  # a file, not a pipe: ffmpeg can never block on a full stderr
        self._proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=self._log)
        self._size = (h, w)

    def write(self, frames) -> None:
        """Append frames (F, H, W, 3) or one (H, W, 3); uint8, or float in [0, 1]; numpy or torch."""
        block = pad_even(_to_uint8_frames(frames))
        if self._proc is None:
            self._start(*block.shape[1:3])
        if block.shape[1:3] != self._size:
            h, w = self._size
            raise HPError(f"All frames must have the same size; frame {self.count} is "
                          f"{block.shape[2]}x{block.shape[1]}, the first {w}x{h}.")
        try:
            self._proc.stdin.write(np.ascontiguousarray(block).tobytes())
        except BrokenPipeError:
            self.finish()  # ffmpeg stopped early: finish() raises with its log
        self.count += len(block)

    def finish(self) -> None:
        """Wait for ffmpeg to complete the temporary file; HPError (file removed) if it failed."""
        if self._finished:
            return
        if self._proc is None:
            raise HPError("There are no frames to write.")
        try:
            self._proc.stdin.close()
        except BrokenPipeError:
            pass
        code = self._proc.wait()
        self._finished = True
        self._log.seek(0)
        text = self._log.read().decode("utf-8", "replace")
        self._log.close()
        if code != 0 or not self.tmp.is_file():
            self.tmp.unlink(missing_ok=True)
            raise HPError(f"Writing {self.path} failed ({_last_line(text)}).",
                          hint="Check that the folder is writable and there is free disk space.")

    def commit(self, *, overwrite: bool = True) -> Path:
        """Finish and move the complete file to its name. ``overwrite=False``: only if no file has that name
        by then (an atomic claim, so of two runs writing one name the second is refused, not silently lost)."""
        self.finish()
        if overwrite:
            os.replace(self.tmp, self.path)
            return self.path
        try:
            os.link(self.tmp, self.path)  # fails if the name exists, atomically
        except FileExistsError:
            self.tmp.unlink(missing_ok=True)
            raise HPError(f"{self.path} appeared while this run was writing it (another run?); this run's result "
                          "was not kept, the other file was left as it is.",
                          hint="Run again with another output name, or pass --overwrite.") from None
        except OSError:  # a file system without hard links: the check-then-rename below is the best it offers
            if self.path.exists():
                raise HPError(f"{self.path} appeared while this run was writing it; it was left as it is.",
                              hint="Run again with another output name, or pass --overwrite.") from None
            os.replace(self.tmp, self.path)
            return self.path
        self.tmp.unlink(missing_ok=True)
        return self.path

    def abort(self) -> None:
        """Stop ffmpeg and delete the temporary file; the destination is left as it was."""
        if self._proc is not None:
            if self._proc.poll() is None:
                self._proc.kill()
            self._proc.wait()
            if self._proc.stdin is not None and not self._proc.stdin.closed:
                try:
                    self._proc.stdin.close()
                except OSError:
                    pass  # the pipe's reader is gone
        if self._log is not None and not self._log.closed:
            self._log.close()
        self._finished = True
        self.tmp.unlink(missing_ok=True)

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            try:
                self.commit()
            except BaseException:
                self.abort()
                raise
        else:
            self.abort()


# The temporary names of unfinished outputs: VideoWriter's (owner's pid in the name) and save_performance's
# (hp_core.performance: mkstemp's random part, no pid).
_VIDEO_PARTIAL = re.compile(r"\.(?P<stem>.+)\.partial-(?P<pid>\d+)-[0-9a-f]+\.mp4")
_PERFORMANCE_PARTIAL = re.compile(r"\.(?P<name>.+\.safetensors)\.[A-Za-z0-9_]{8}\.partial")
# A performance partial is written in one go (well under a second); one this old that no process holds open
# belongs to a run that was killed.
STALE_PERFORMANCE_SECONDS = 120.0


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return True  # not a pid this code writes: leave the file alone
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError, OverflowError):
        return True  # someone else's process, or nothing to tell: keep the file
    return True


def _open_by_any_process(path: Path) -> bool | None:
    """True when some process holds ``path`` open (Linux /proc); None where that cannot be told."""
    proc = Path("/proc")
    if not (proc / "self" / "fd").is_dir():
        return None
    target = os.path.realpath(path)
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            for fd in (entry / "fd").iterdir():
                try:
                    if os.readlink(fd) == target:
                        return True
                except OSError:
                    continue
        except OSError:
            continue  # gone, or not ours to look into
    return False


def clear_stale_partials(folder: str | os.PathLike) -> list[Path]:
    """Delete the unfinished outputs that killed runs (SIGKILL, power loss) left in ``folder``: VideoWriter's
    ``.{stem}.partial-{pid}-{id}.mp4`` whose process is gone, and save_performance's ``.{name}.*.partial``
    that no process holds open and that has not changed for a while. Nothing else is touched; returns what
    was deleted."""
    removed = []
    try:
        entries = list(Path(folder).iterdir())
    except OSError:
        return removed
    now = None
    for path in entries:
        name = path.name
        if not name.startswith(".") or not name.endswith((".mp4", ".partial")):
            continue
        video = _VIDEO_PARTIAL.fullmatch(name)
        stale = False
        if video is not None:
            # its process is gone here, and it has not grown for a while (a run on another machine or in another
            # container that shares the folder keeps writing it)
            now = now or time.time()
            try:
                quiet = now - path.lstat().st_mtime > STALE_PERFORMANCE_SECONDS
            except OSError:
                continue
            stale = quiet and not _pid_alive(int(video.group("pid")))
        elif _PERFORMANCE_PARTIAL.fullmatch(name):
            now = now or time.time()
            try:
                old = now - path.lstat().st_mtime > STALE_PERFORMANCE_SECONDS
            except OSError:
                continue
            stale = old and _open_by_any_process(path) is False
        if not stale:
            continue
        try:
            if path.is_file() and not path.is_symlink():
                path.unlink()
                removed.append(path)
        except OSError:
            pass  # read-only folder, or already gone
    return removed


__all__ = ["ffmpeg_exe", "VideoInfo", "probe_video", "iter_frames", "VideoWriter", "clear_stale_partials"]
