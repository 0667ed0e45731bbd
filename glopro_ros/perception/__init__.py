"""Perception: images to people, keypoints and per-person Gaussian SMPL measurements."""
