"""Pipeline outputs -> the node's output messages, shared by the live node and offline replay.

One function builds /humans and /markers from a PipelineOutput, so a bag replayed offline gives
byte-for-byte the messages the node would publish for the same frames. ``OutputMessages`` keeps
the one piece of state this needs: which track ids were published (a lost track is announced once,
as STATUS_LOST, only if it was ever published).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
from std_msgs.msg import Header
from visualization_msgs.msg import MarkerArray

from glopro_ros.core.body_model import SMPL_PARENTS
from glopro_ros.msg import HumanState, HumanStateArray
from glopro_ros.pipeline import HumanPipeline, PipelineOutput
from glopro_ros.ros.conversions import TrackInfo, human_state_array, time_msg
from glopro_ros.ros.markers import MeshDecimation, PeopleMarkers


def display_mesh(pipeline: HumanPipeline, cell_size: float = 0.06) -> MeshDecimation:
    """Low-poly mesh of the pipeline's body model for the markers; also asks the pipeline to pose its vertices.

    The 6 cm default cell (about 1300 triangles) keeps marker building to a few ms per person."""
    body = pipeline.body
    rest = body.forward_vertices(torch.zeros(1, 10), torch.zeros(1, 23, 3), torch.eye(3)[None], torch.zeros(1, 3))
    mesh = MeshDecimation.from_mesh(rest[0].numpy(), body.faces, cell_size)
    pipeline.set_mesh_vertices(mesh.vertex_index)
    return mesh


@dataclass
class MarkerRate:
    """Which frames get markers: at most ``rate`` per second of frame stamps (0: every frame).

    A frame gets them when its stamp is the first in a new 1/rate-long slot of time, so the choice
    depends on the stamps only (the same frames live and in a replay at any speed), jitter in the
    stamps cannot lower the rate, and a jump back in time simply starts a new slot."""

    rate: float
    _slot: int | None = field(default=None, init=False, repr=False)

    def due(self, stamp: float) -> bool:
        if self.rate <= 0.0:
            return True
        slot = math.floor(stamp * self.rate)
        if slot == self._slot:
            return False
        self._slot = slot
        return True


@dataclass
class Published:
    """The messages of one frame; ``valid`` indexes the output's people that made it into them."""

    humans: HumanStateArray
    markers: MarkerArray | bytes | None  # bytes: OutputMessages.serialized_markers
    valid: list[int]
    dropped: int  # people left out for non-finite values or invalid covariances


@dataclass
class OutputMessages:
    body_model: str
    mesh: MeshDecimation | None = None
    marker_sigma: float = 2.0
    with_markers: bool = True
    serialized_markers: bool = False  # markers() gives CDR bytes (what the node publishes: cheaper, same message)
    reported_ids: set[int] = field(default_factory=set)

    def reset(self) -> None:
        """Forget published ids (with HumanPipeline.reset, when time jumps back)."""
        self.reported_ids.clear()

    def build(self, header: Header, out: PipelineOutput) -> Published:
        """HumanStateArray (+ STATUS_LOST entries) and MarkerArray for one output; header.frame_id = world."""
        published = self.humans(header, out)
        published.markers = self.markers(header, out, published.valid) if self.with_markers else None
        return published

    def humans(self, header: Header, out: PipelineOutput) -> Published:
        """Only the HumanStateArray (markers None), so a node can publish it before building markers."""
        info = TrackInfo(out.track_ids, out.status, out.existence, out.last_observed, out.twist, out.twist_cov)
        msg, dropped = human_state_array(header, self.body_model, out.state, out.joints, info)
        for track_id in out.lost_ids:
            if track_id in self.reported_ids:
                msg.humans.append(HumanState(track_id=track_id, status=HumanState.STATUS_LOST,
                                             last_observed=time_msg(out.stamp)))
                self.reported_ids.discard(track_id)
        self.reported_ids.update(h.track_id for h in msg.humans if h.status != HumanState.STATUS_LOST)
        published = {h.track_id for h in msg.humans}
        valid = [i for i, t in enumerate(out.track_ids) if int(t) in published]
        return Published(msg, None, valid, dropped)

    def __post_init__(self) -> None:
        # The pipeline poses only mesh.vertex_index (in that order), so the faces index its output directly.
        posed = None if self.mesh is None else MeshDecimation(np.arange(len(self.mesh.vertex_index)), self.mesh.faces)
        self._markers = PeopleMarkers(SMPL_PARENTS, posed, self.marker_sigma, serialized=self.serialized_markers)

    def markers(self, header: Header, out: PipelineOutput, valid: list[int]) -> MarkerArray | bytes:
        """Markers of the people ``valid`` indexes (those that made it into the HumanStateArray), as CDR bytes
        with ``serialized_markers``; a MarkerArray is valid until the next call (PeopleMarkers reuses its objects)."""
        return self._markers(header, out.track_ids[valid], out.existence[valid], out.joints.mean.numpy()[valid],
                             out.joints.cov.numpy()[valid], None if out.vertices is None else out.vertices[valid])
