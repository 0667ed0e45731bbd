"""`glopro convert-emdb SEQ_data.pkl OUT_BAG`: an EMDB sequence to a bag with ground truth and detections.

Reads EMDB's per-sequence pickle ({P}_{seq}_data.pkl: name, n_frames, good_frames_mask,
camera {intrinsics, extrinsics (N, 4, 4) world -> camera, width, height}, smpl {poses_root (N, 3),
poses_body (N, 69), trans (N, 3), betas}). EMDB gives SMPL parameters, not joints: the joints come
from --body-model-path (an SMPL model file for exact ground truth; the built-in default body
otherwise, which is only approximate). Images (<sequence>/images/%05d.jpg) are optional.
"""
from __future__ import annotations

import argparse
import pickle
import sys
from pathlib import Path

import numpy as np
import torch

from glopro_ros.core.body_model import BodyModel
from glopro_ros.perception.rotations import exp_rotvec
from glopro_ros.tools.dataset_bag import (EXIT_BAD_INPUT, EXIT_CODES, EXIT_EXISTS, EXIT_OK, DatasetSequence,
                                          FormatError, common_arguments, image_files, write_dataset_bag)

FPS = 30.0


def _field(data: dict, *keys: str) -> np.ndarray:
    value = data
    for key in keys:
        if not isinstance(value, dict) or key not in value:
            raise FormatError(f"not an EMDB sequence file: missing {'/'.join(keys)}")
        value = value[key]
    return np.asarray(value)


def load_emdb(path: Path, body: BodyModel, images: Path | None = None) -> DatasetSequence:
    """Parse one sequence pickle; joints through `body`'s kinematic chain from EMDB's SMPL parameters."""
    try:
        with open(path, "rb") as f:
            data = pickle.load(f)
    except (OSError, pickle.UnpicklingError, EOFError, AttributeError, ValueError) as error:
        raise FormatError(f"cannot read {path} as a pickle: {error}") from error
    extrinsics = _field(data, "camera", "extrinsics").astype(float)
    root = _field(data, "smpl", "poses_root").astype(float)
    body_pose = _field(data, "smpl", "poses_body").astype(float)
    trans = _field(data, "smpl", "trans").astype(float)
    betas = _field(data, "smpl", "betas").astype(float).reshape(-1)[:10]
    good = _field(data, "good_frames_mask").astype(bool)
    T = len(extrinsics)
    if extrinsics.shape[1:] != (4, 4) or root.shape != (T, 3) or body_pose.shape != (T, 69) or trans.shape != (T, 3) \
            or good.shape != (T,) or betas.shape != (10,):
        raise FormatError(f"{path}: inconsistent shapes (extrinsics {extrinsics.shape}, poses_root {root.shape}, "
                          f"poses_body {body_pose.shape}, trans {trans.shape}, good_frames_mask {good.shape})")
    f64 = dict(dtype=torch.float64)
    root_rot = exp_rotvec(root)
    b = torch.as_tensor(np.tile(betas, (T, 1)), **f64)
    with torch.no_grad():
        pelvis = torch.as_tensor(trans, **f64) + body.rest_joints(b)[:, 0]  # smplx: pelvis = transl + J0(betas)
        joints = body.forward_joints(b, torch.as_tensor(exp_rotvec(body_pose.reshape(T, 23, 3)), **f64),
                                     torch.as_tensor(root_rot, **f64), pelvis)[0].numpy()
    name = str(data.get("name", path.stem))
    return DatasetSequence(
        name=name, fps=FPS, k=_field(data, "camera", "intrinsics").astype(float).reshape(3, 3),
        width=int(_field(data, "camera", "width")), height=int(_field(data, "camera", "height")),
        cam_t_world=extrinsics, valid=good[:, None], betas=betas[None], root_rot=root_rot[:, None],
        body_pose=body_pose.reshape(T, 1, 23, 3), joints=joints[:, None],
        image_files=image_files(images, "{:05d}.jpg", T))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="glopro convert-emdb", description=__doc__.split("\n\n")[0], epilog=EXIT_CODES)
    parser.add_argument("sequence", type=Path, help="EMDB <P>/<sequence>/<P>_<sequence>_data.pkl")
    common_arguments(parser)
    parser.add_argument("--body-model-path", default="", help="SMPL model file (.pkl/.npz); empty: built-in default body")
    args = parser.parse_args(argv)
    if args.out_bag.exists():
        print(f"glopro convert-emdb: {args.out_bag} exists", file=sys.stderr)
        return EXIT_EXISTS
    torch.set_num_threads(1)
    try:
        body = BodyModel(args.body_model_path or None, device="cpu")
        seq = load_emdb(args.sequence, body, args.images)
        counts = write_dataset_bag(args.out_bag, seq, body.name, args.up, args.seed, args.image_scale)
    except (FormatError, OSError) as error:
        print(f"glopro convert-emdb: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(f"wrote {args.out_bag}: {seq.name}, {len(seq.cam_t_world)} frames ({int(seq.valid.sum())} good); "
          + ", ".join(f"{t} {n}" for t, n in sorted(counts.items())))
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
