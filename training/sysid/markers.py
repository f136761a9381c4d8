"""The ArUco markers of the identification kit: which marker goes where, their sizes, and their images.

Four markers from OpenCV's 4x4 dictionary: one on the body beside the leg (upright: its top edge up), one
on the hip axis, one on the knee axis and one at the foot, all facing the phone. The body marker fixes the
frame the angles are measured in (its edges give the phone's roll and tilt); the centres of the other three
give the thigh and the shin, so the leg markers may sit at any rotation.
"""

from __future__ import annotations

import cv2
import numpy as np

DICTIONARY = cv2.aruco.DICT_4X4_50
BODY, HIP, KNEE, FOOT = 0, 1, 2, 3
NAMES = {BODY: "body", HIP: "hip axis", KNEE: "knee axis", FOOT: "foot"}
SIZES_MM = {BODY: 30.0, HIP: 16.0, KNEE: 16.0, FOOT: 16.0}       # the black square's side
QUIET_MM = 3.0                     # white margin around each marker (cut along the outer line)


def dictionary():
    return cv2.aruco.getPredefinedDictionary(DICTIONARY)


def detector() -> "cv2.aruco.ArucoDetector":
    params = cv2.aruco.DetectorParameters()
    params.cornerRefinementMethod = cv2.aruco.CORNER_REFINE_SUBPIX
    params.cornerRefinementWinSize = 3
    params.adaptiveThreshWinSizeMin, params.adaptiveThreshWinSizeMax, params.adaptiveThreshWinSizeStep = 9, 19, 10
    return cv2.aruco.ArucoDetector(dictionary(), params)


def marker_image(marker_id: int, pixels: int) -> np.ndarray:
    """The marker's black square, `pixels` wide (uint8, 0 black / 255 white)."""
    return cv2.aruco.generateImageMarker(dictionary(), marker_id, pixels)


def with_quiet_zone(marker_id: int, pixels: int) -> tuple[np.ndarray, float]:
    """The marker with its white margin (uint8) and the margin's width in pixels."""
    margin = pixels * QUIET_MM / SIZES_MM[marker_id]
    pad = int(round(margin))
    img = cv2.copyMakeBorder(marker_image(marker_id, pixels), pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=255)
    return img, float(pad)
