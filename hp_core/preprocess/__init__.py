"""Preprocessing: images in, network inputs out (faces, crops, identity, intensity, poses, paste-back)."""

from .crop import (appearance_input, crop_resize, motion_face_box, motion_face_crop, portrait_crop_box,
                   square_crop_box, to_crop_coords, to_signed_tensor, to_unit_tensor)
from .dwpose import DWPoseEstimator, frame_to_crop, load_dwpose, poses_from_openpose_json
from .faces import Face, FaceDetector, nms, select_face
from .identity import ARCFACE_TEMPLATE, ArcFaceEmbedder, align_arcface, load_arcface, no_identity, similarity_transform
from .image import read_image_file, to_rgb_uint8
from .intensity import chunk_intensity, intensity_ids
from .onnx_session import onnx_providers, open_session
from .paste_back import iter_paste_back, paste_back, soft_mask
from .pose_align import align_poses, render_pose, render_poses
from .prepare import (DrivingInputs, DrivingTrack, SourceFace, prepare_driving, prepare_source, skeleton_images,
                      track_driving)
from .scrfd import ScrfdDetector, find_scrfd, load_scrfd
from .track import fill_missing, smooth_track
from .yolo_face import YoloFaceDetector, load_yolo_face

__all__ = [
    "ARCFACE_TEMPLATE", "ArcFaceEmbedder", "DWPoseEstimator", "DrivingTrack", "Face", "FaceDetector",
    "DrivingInputs", "SourceFace", "prepare_driving", "prepare_source", "track_driving",
    "ScrfdDetector", "YoloFaceDetector", "align_arcface", "align_poses", "appearance_input", "chunk_intensity",
    "crop_resize", "fill_missing", "frame_to_crop", "intensity_ids", "iter_paste_back", "load_arcface",
    "load_dwpose", "find_scrfd", "load_scrfd", "load_yolo_face", "motion_face_box", "motion_face_crop", "nms", "no_identity",
    "onnx_providers", "open_session", "paste_back", "portrait_crop_box", "poses_from_openpose_json",
    "read_image_file", "render_pose", "render_poses", "select_face", "similarity_transform", "skeleton_images",
    "smooth_track", "soft_mask", "square_crop_box", "to_crop_coords", "to_rgb_uint8", "to_signed_tensor",
    "to_unit_tensor",
]
