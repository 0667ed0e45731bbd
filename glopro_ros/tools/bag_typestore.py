"""A `rosbags` typestore that knows the glopro_ros messages, for reading and writing bags offline.

The message definitions are read from the package's msg/ folder: the source checkout's, or the one
an install put under <prefix>/share/glopro_ros/msg (ament build or pip install).
"""
from __future__ import annotations

import sys
from pathlib import Path

from rosbags.typesys import Stores, get_types_from_msg, get_typestore
from rosbags.typesys.store import Typestore

PACKAGE = "glopro_ros"


def msg_directory() -> Path:
    """Folder with the package's .msg files; raises FileNotFoundError naming the places looked at."""
    candidates = [Path(__file__).resolve().parents[2] / "msg", Path(sys.prefix) / "share" / PACKAGE / "msg"]
    for folder in candidates:
        if any(folder.glob("*.msg")):
            return folder
    raise FileNotFoundError(f"no {PACKAGE} .msg files in any of: {', '.join(map(str, candidates))}")


def glopro_typestore(base: Stores = Stores.ROS2_KILTED) -> Typestore:
    """`base`'s standard types plus every glopro_ros message (ROS1_NOETIC: their ROS 1 form, for ROS 1 bags)."""
    store = get_typestore(base)
    types: dict = {}
    for path in sorted(msg_directory().glob("*.msg")):
        types.update(get_types_from_msg(path.read_text(), f"{PACKAGE}/msg/{path.stem}"))
    store.register(types)
    return store
