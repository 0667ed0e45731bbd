"""RViz markers for tracked people: mesh, skeleton, joint uncertainty ellipsoids, ID text.

Every MarkerArray starts with a DELETEALL, so people who are gone vanish without bookkeeping. The
mesh is drawn from a vertex-clustered low-poly version of the body model's faces (``MeshDecimation``)
because every triangle corner is one geometry_msgs/Point in the message. Building rclpy messages is
Python work that the node's worker does per frame, so the corners share one Point per vertex, the
ellipsoids are computed for all joints at once, and each track's message objects are reused from
frame to frame (``PeopleMarkers``). For publishing, ``PeopleMarkers(serialized=True)`` gives the CDR
bytes directly, with the mesh corners written from numpy (``splice_points``): rclpy reading 19000
corner Points one by one was most of a 5-person frame's marker cost.
"""
from __future__ import annotations

import colorsys
import struct
from dataclasses import dataclass
from operator import itemgetter

import numpy as np
from builtin_interfaces.msg import Duration
from geometry_msgs.msg import Point
from rclpy.serialization import serialize_message
from scipy.spatial.transform import Rotation
from std_msgs.msg import ColorRGBA, Header
from visualization_msgs.msg import Marker, MarkerArray


def track_color(track_id: int, alpha: float) -> ColorRGBA:
    """Distinct, stable colour per ID (golden-ratio hue steps)."""
    r, g, b = colorsys.hsv_to_rgb((track_id * 0.618034) % 1.0, 0.65, 0.95)
    return ColorRGBA(r=r, g=g, b=b, a=float(np.clip(alpha, 0.15, 1.0)))


@dataclass(frozen=True)
class MeshDecimation:
    """Low-poly mesh: one representative vertex per occupied grid cell, faces remapped onto them.

    Hand-written (about 15 lines) because no maintained decimation library is among the
    dependencies; vertex clustering keeps the mesh closed enough for display.
    """

    vertex_index: np.ndarray  # (K,) representative vertex of each cluster
    faces: np.ndarray  # (F', 3) triangles over the K representatives

    @classmethod
    def from_mesh(cls, rest_vertices: np.ndarray, faces: np.ndarray, cell_size: float = 0.04) -> "MeshDecimation":
        cells = np.floor(rest_vertices / cell_size).astype(np.int64)
        _, cluster, counts = np.unique(cells, axis=0, return_inverse=True, return_counts=True)
        cluster = cluster.reshape(-1)
        centre = np.zeros((counts.size, 3))
        np.add.at(centre, cluster, rest_vertices)
        centre /= counts[:, None]
        distance = np.linalg.norm(rest_vertices - centre[cluster], axis=1)
        order = np.lexsort((distance, cluster))
        first = np.ones(order.size, dtype=bool)
        first[1:] = cluster[order[1:]] != cluster[order[:-1]]
        representative = order[first]  # closest vertex to each cluster's centre
        remapped = cluster[faces]
        keep = (remapped[:, 0] != remapped[:, 1]) & (remapped[:, 1] != remapped[:, 2]) & (remapped[:, 0] != remapped[:, 2])
        unique_faces = np.unique(np.sort(remapped[keep], axis=1), axis=0, return_index=True)[1]
        return cls(representative, remapped[keep][np.sort(unique_faces)])


def ellipsoid_pose(cov: np.ndarray, sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """Diameters along the principal axes (k-sigma) and the axes' rotation as quaternion (x, y, z, w);
    ``cov`` (..., 3, 3) gives (..., 3) and (..., 4), so all joints take one eigh and one Rotation."""
    cov = np.asarray(cov, dtype=float)
    values, vectors = np.linalg.eigh(0.5 * (cov + np.swapaxes(cov, -1, -2)))
    vectors[..., :, 0] *= np.where(np.linalg.det(vectors) < 0, -1.0, 1.0)[..., None]  # proper rotations
    quaternion = Rotation.from_matrix(vectors.reshape(-1, 3, 3)).as_quat().reshape(*cov.shape[:-2], 4)
    return 2.0 * sigma * np.sqrt(np.clip(values, 1e-12, None)), quaternion


def _move(points: list[Point], xyz: np.ndarray) -> None:
    """Set existing Points to new coordinates (cheaper than building new ones)."""
    for point, (x, y, z) in zip(points, np.asarray(xyz, dtype=float).reshape(-1, 3).tolist()):
        point.x, point.y, point.z = x, y, z


# A Point no real vertex has (three quiet NaNs with payloads): marks where mesh corners go in the CDR bytes.
_PLACEHOLDER = struct.unpack("<3d", struct.pack("<3Q", 0x7FF8_6C6F_7072_6F01, 0x7FF8_6C6F_7072_6F02,
                                                0x7FF8_6C6F_7072_6F03))


def splice_points(cdr: bytes, corners: list[np.ndarray]) -> bytes:
    """CDR of a MarkerArray whose k-th Marker holding the lone ``_PLACEHOLDER`` point gets ``corners[k]`` (M, 3)
    as its points instead, in order: the bytes rclpy writes for those Points. In a Marker the points' uint32
    length lies 108 bytes after the 8-aligned pose (pose 56, scale 24, color 16, lifetime 8, frame_locked 1 + 3
    padding), so the float64s follow it without padding; everything after the sequence needs 8-byte alignment
    at most, which the inserted multiple of 24 bytes keeps. Little- or big-endian per the CDR header."""
    order = "<" if cdr[1] & 1 else ">"
    mark, one = struct.pack(f"{order}3d", *_PLACEHOLDER), struct.pack(f"{order}I", 1)
    pieces, start = [], 0
    for points in corners:
        at = cdr.find(mark, start)
        if at < 4 or cdr[at - 4:at] != one:
            raise ValueError("mesh placeholder (one point) not found in the serialised markers")
        pieces += [cdr[start:at - 4], struct.pack(f"{order}I", len(points)),
                   np.asarray(points, dtype=f"{order}f8").tobytes()]
        start = at + len(mark)
    return b"".join(pieces + [cdr[start:]])


@dataclass
class _Person:
    """One track's markers and the Points they share, kept from frame to frame."""

    markers: list[Marker]  # mesh (if any), skeleton, one ellipsoid per joint, id text
    vertices: list[Point]  # the mesh's vertices, referenced by its TRIANGLE_LIST corners
    bones: list[Point]  # the skeleton's LINE_LIST ends


class PeopleMarkers:
    """Markers for N people: mesh (TRIANGLE_LIST), skeleton (LINE_LIST), 2-sigma joint ellipsoids
    (SPHERE each), ID text; the first marker is a DELETEALL.

    rclpy messages are Python objects built one field at a time (about 50 us a Marker, 2 us a Point;
    5 people are about 140 Markers and 3200 Points), and a track's markers differ between frames only in
    numbers, so each track keeps its Marker and Point objects while it is drawn and a frame only sets new
    values. A returned MarkerArray is therefore valid until the next call: publish or serialise it first.
    serialized=True returns the MarkerArray's CDR bytes instead (for ``Publisher.publish``), the same message
    with the mesh corners written from numpy.
    """

    def __init__(self, parents: tuple[int, ...], mesh: MeshDecimation | None = None, sigma: float = 2.0,
                 lifetime_s: float = 1.0, serialized: bool = False) -> None:
        self.mesh, self.sigma, self.serialized = mesh, sigma, serialized
        self._bones = np.array([(j, p) for j, p in enumerate(parents) if p >= 0]).reshape(-1)
        self._joints = len(parents)
        self._lifetime = Duration(sec=int(lifetime_s), nanosec=int((lifetime_s % 1) * 1e9))
        self._delete_all = Marker(action=Marker.DELETEALL)
        self._people: dict[int, _Person] = {}

    def _marker(self, ns: str, marker_id: int, kind: int) -> Marker:
        m = Marker(ns=ns, id=marker_id, type=kind, action=Marker.ADD, lifetime=self._lifetime)
        m.pose.orientation.w = 1.0
        return m

    def _person(self, track_id: int) -> _Person:
        markers, vertices = [], []
        if self.mesh is not None:
            m = self._marker("mesh", track_id, Marker.TRIANGLE_LIST)
            m.scale.x = m.scale.y = m.scale.z = 1.0
            if self.serialized:
                m.points = [Point(x=_PLACEHOLDER[0], y=_PLACEHOLDER[1], z=_PLACEHOLDER[2])]
            else:
                vertices = [Point() for _ in range(len(self.mesh.vertex_index))]
                m.points = list(itemgetter(*self.mesh.faces.ravel().tolist())(vertices))  # corners share vertex Points
            markers.append(m)
        skeleton = self._marker("skeleton", track_id, Marker.LINE_LIST)
        skeleton.scale.x = 0.02
        skeleton.points = [Point() for _ in range(len(self._bones))]
        markers.append(skeleton)
        markers += [self._marker("uncertainty", track_id * self._joints + j, Marker.SPHERE) for j in range(self._joints)]
        text = self._marker("id", track_id, Marker.TEXT_VIEW_FACING)
        text.scale.z, text.text = 0.2, f"{track_id}"
        text.color = ColorRGBA(r=1.0, g=1.0, b=1.0, a=1.0)
        markers.append(text)
        return _Person(markers, vertices, skeleton.points)

    def __call__(self, header: Header, track_ids: np.ndarray, confidence: np.ndarray, joints: np.ndarray,
                 joint_covs: np.ndarray, vertices: np.ndarray | None = None) -> MarkerArray | bytes:
        """joints (N, J, 3) and joint_covs (N, J, 3, 3) in header.frame_id; vertices (N, V, 3): the posed
        full-resolution vertices, drawn through ``mesh`` (no mesh without them)."""
        self._delete_all.header = header
        out = [self._delete_all]
        corners = []
        diameters, quaternions = ellipsoid_pose(joint_covs, self.sigma)
        people: dict[int, _Person] = {}
        for n, track_id in enumerate(np.asarray(track_ids, dtype=int).tolist()):
            person = people[track_id] = self._people.get(track_id) or self._person(track_id)
            color = track_color(track_id, float(confidence[n]))
            markers = person.markers
            if self.mesh is not None:
                mesh, *markers = markers
                if vertices is not None:
                    if self.serialized:
                        corners.append(vertices[n][self.mesh.vertex_index][self.mesh.faces.ravel()])
                    else:
                        _move(person.vertices, vertices[n][self.mesh.vertex_index])
                    mesh.header, mesh.color = header, color
                    out.append(mesh)
            skeleton, *spheres, text = markers
            skeleton.header, skeleton.color = header, ColorRGBA(r=color.r, g=color.g, b=color.b, a=1.0)
            _move(person.bones, joints[n][self._bones])
            out.append(skeleton)
            translucent = ColorRGBA(r=color.r, g=color.g, b=color.b, a=0.35)
            for m, position, quaternion, diameter in zip(spheres, joints[n].tolist(), quaternions[n].tolist(),
                                                         diameters[n].tolist()):
                m.header, m.color = header, translucent
                m.pose.position.x, m.pose.position.y, m.pose.position.z = position
                m.pose.orientation.x, m.pose.orientation.y, m.pose.orientation.z, m.pose.orientation.w = quaternion
                m.scale.x, m.scale.y, m.scale.z = diameter
            out += spheres
            head = joints[n, int(np.argmax(joints[n, :, 2]))].tolist()
            text.header = header
            text.pose.position.x, text.pose.position.y, text.pose.position.z = head[0], head[1], head[2] + 0.3
            out.append(text)
        self._people = people  # tracks not drawn this frame are forgotten
        if self.serialized:
            return splice_points(serialize_message(MarkerArray(markers=out)), corners)
        return MarkerArray(markers=out)
