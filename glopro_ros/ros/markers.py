"""RViz markers for tracked people: mesh, skeleton, joint uncertainty ellipsoids, ID text.

Every MarkerArray starts with a DELETEALL, so people who are gone vanish without bookkeeping. The
mesh is drawn from a vertex-clustered low-poly version of the body model's faces (``MeshDecimation``)
because every triangle corner is one geometry_msgs/Point in the message. Building rclpy messages is
Python work that the node's worker does per frame, so the corners share one Point per vertex and the
ellipsoids are computed for all joints at once.
"""
from __future__ import annotations

import colorsys
from dataclasses import dataclass
from operator import itemgetter

import numpy as np
from builtin_interfaces.msg import Duration
from geometry_msgs.msg import Point
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


def _points(xyz: np.ndarray) -> list[Point]:
    return [Point(x=x, y=y, z=z) for x, y, z in np.asarray(xyz, dtype=float).reshape(-1, 3).tolist()]


def _mesh_points(vertices: np.ndarray, faces: np.ndarray) -> list[Point]:
    """TRIANGLE_LIST corners: one Point per vertex, referenced by every face that uses it.

    rclpy serialises each list entry, so the message is the same as with a Point per corner, but a
    person's mesh needs about 600 Point objects instead of about 3800 (6x fewer to build)."""
    shared = _points(vertices)
    return list(itemgetter(*faces.ravel().tolist())(shared))


def ellipsoid_pose(cov: np.ndarray, sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """Diameters along the principal axes (k-sigma) and the axes' rotation as quaternion (x, y, z, w);
    ``cov`` (..., 3, 3) gives (..., 3) and (..., 4), so all joints take one eigh and one Rotation."""
    cov = np.asarray(cov, dtype=float)
    values, vectors = np.linalg.eigh(0.5 * (cov + np.swapaxes(cov, -1, -2)))
    vectors[..., :, 0] *= np.where(np.linalg.det(vectors) < 0, -1.0, 1.0)[..., None]  # proper rotations
    quaternion = Rotation.from_matrix(vectors.reshape(-1, 3, 3)).as_quat().reshape(*cov.shape[:-2], 4)
    return 2.0 * sigma * np.sqrt(np.clip(values, 1e-12, None)), quaternion


def people_markers(header: Header, track_ids: np.ndarray, confidence: np.ndarray, joints: np.ndarray,
                   joint_covs: np.ndarray, parents: tuple[int, ...], vertices: np.ndarray | None = None,
                   mesh: MeshDecimation | None = None, sigma: float = 2.0, lifetime_s: float = 1.0) -> MarkerArray:
    """Markers for N people: joints (N, J, 3) and joint_covs (N, J, 3, 3) in header.frame_id,
    optional full-resolution vertices (N, V, 3) drawn through ``mesh``."""
    lifetime = Duration(sec=int(lifetime_s), nanosec=int((lifetime_s % 1) * 1e9))
    out = MarkerArray(markers=[Marker(header=header, action=Marker.DELETEALL)])

    def marker(ns: str, marker_id: int, kind: int, color: ColorRGBA) -> Marker:
        m = Marker(header=header, ns=ns, id=marker_id, type=kind, action=Marker.ADD, color=color, lifetime=lifetime)
        m.pose.orientation.w = 1.0
        out.markers.append(m)
        return m

    bones = np.array([(j, p) for j, p in enumerate(parents) if p >= 0]).reshape(-1)
    diameters, quaternions = ellipsoid_pose(joint_covs, sigma)
    for n, track_id in enumerate(np.asarray(track_ids, dtype=int).tolist()):
        color = track_color(track_id, float(confidence[n]))
        if vertices is not None and mesh is not None:
            m = marker("mesh", track_id, Marker.TRIANGLE_LIST, color)
            m.scale.x = m.scale.y = m.scale.z = 1.0
            m.points = _mesh_points(vertices[n][mesh.vertex_index], mesh.faces)
        m = marker("skeleton", track_id, Marker.LINE_LIST, ColorRGBA(r=color.r, g=color.g, b=color.b, a=1.0))
        m.scale.x = 0.02
        m.points = _points(joints[n][bones])
        translucent = ColorRGBA(r=color.r, g=color.g, b=color.b, a=0.35)
        for j, (position, quaternion, diameter) in enumerate(zip(
                joints[n].tolist(), quaternions[n].tolist(), diameters[n].tolist())):
            m = marker("uncertainty", track_id * joints.shape[1] + j, Marker.SPHERE, translucent)
            m.pose.position.x, m.pose.position.y, m.pose.position.z = position
            m.pose.orientation.x, m.pose.orientation.y, m.pose.orientation.z, m.pose.orientation.w = quaternion
            m.scale.x, m.scale.y, m.scale.z = diameter
        m = marker("id", track_id, Marker.TEXT_VIEW_FACING, ColorRGBA(r=1.0, g=1.0, b=1.0, a=1.0))
        head = joints[n, int(np.argmax(joints[n, :, 2]))].tolist()
        m.pose.position.x, m.pose.position.y, m.pose.position.z = head[0], head[1], head[2] + 0.3
        m.scale.z = 0.2
        m.text = f"{track_id}"
    return out
