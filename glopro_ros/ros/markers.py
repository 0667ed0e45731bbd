"""RViz markers for tracked people: mesh, skeleton, joint uncertainty ellipsoids, ID text.

Every MarkerArray starts with a DELETEALL, so people who are gone vanish without bookkeeping. The
mesh is drawn from a vertex-clustered low-poly version of the body model's faces (``MeshDecimation``)
because a full-resolution TRIANGLE_LIST costs about 1 ms per thousand triangles to build in rclpy.
"""
from __future__ import annotations

import colorsys
from dataclasses import dataclass

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
    return [Point(x=float(x), y=float(y), z=float(z)) for x, y, z in np.asarray(xyz, dtype=float).reshape(-1, 3)]


def ellipsoid_pose(cov: np.ndarray, sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """Diameters along the principal axes (k-sigma) and the axes' rotation as quaternion (x, y, z, w)."""
    values, vectors = np.linalg.eigh(0.5 * (cov + cov.T))
    if np.linalg.det(vectors) < 0:
        vectors[:, 0] = -vectors[:, 0]
    return 2.0 * sigma * np.sqrt(np.clip(values, 1e-12, None)), Rotation.from_matrix(vectors).as_quat()


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

    bones = [(j, p) for j, p in enumerate(parents) if p >= 0]
    for n, track_id in enumerate(np.asarray(track_ids, dtype=int)):
        color = track_color(track_id, float(confidence[n]))
        if vertices is not None and mesh is not None:
            m = marker("mesh", track_id, Marker.TRIANGLE_LIST, color)
            m.scale.x = m.scale.y = m.scale.z = 1.0
            m.points = _points(vertices[n][mesh.vertex_index][mesh.faces])
        m = marker("skeleton", track_id, Marker.LINE_LIST, ColorRGBA(r=color.r, g=color.g, b=color.b, a=1.0))
        m.scale.x = 0.02
        m.points = _points(joints[n][np.array(bones).reshape(-1)])
        for j in range(joints.shape[1]):
            m = marker("uncertainty", int(track_id) * joints.shape[1] + j, Marker.SPHERE,
                       ColorRGBA(r=color.r, g=color.g, b=color.b, a=0.35))
            diameters, quaternion = ellipsoid_pose(joint_covs[n, j], sigma)
            m.pose.position.x, m.pose.position.y, m.pose.position.z = (float(v) for v in joints[n, j])
            m.pose.orientation.x, m.pose.orientation.y, m.pose.orientation.z, m.pose.orientation.w = (float(v) for v in quaternion)
            m.scale.x, m.scale.y, m.scale.z = (float(v) for v in diameters)
        m = marker("id", track_id, Marker.TEXT_VIEW_FACING, ColorRGBA(r=1.0, g=1.0, b=1.0, a=1.0))
        head = joints[n, int(np.argmax(joints[n, :, 2]))]
        m.pose.position.x, m.pose.position.y, m.pose.position.z = float(head[0]), float(head[1]), float(head[2]) + 0.3
        m.scale.z = 0.2
        m.text = f"{track_id}"
    return out
