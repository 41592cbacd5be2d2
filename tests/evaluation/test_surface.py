import numpy as np
import pytest

from core.evaluation.surface import surface_mesh


def ball(radius=10, size=32, centre=None):
    grid = np.indices((size, size, size)).transpose(1, 2, 3, 0) + 0.5
    return np.linalg.norm(grid - (size / 2 if centre is None else np.asarray(centre)), axis=-1) < radius


def signed_volume(vertices, faces):
    a, b, c = (vertices[faces[:, n]].astype(float) for n in range(3))
    return np.einsum("ij,ij->i", a, np.cross(b, c)).sum() / 6


def test_a_ball_gives_a_closed_outward_mesh_of_the_right_size():
    mask = ball()
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    vertices, faces = surface_mesh(mask, affine, max_triangles=100_000)
    edges = np.sort(np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]), axis=1)
    _, uses = np.unique(edges, axis=0, return_counts=True)
    assert (uses == 2).all()  # closed: every edge borders exactly two triangles
    assert signed_volume(vertices, faces) == pytest.approx(mask.sum() * 8, rel=0.05)  # positive: wound outwards
    radii = np.linalg.norm(vertices - vertices.mean(axis=0), axis=1)
    assert radii.mean() == pytest.approx(20, rel=0.05) and radii.std() < 1


def test_vertices_are_in_the_affines_millimetres():
    mask = ball(radius=4, size=16, centre=(5, 8, 8))
    affine = np.array([[0.5, 0, 0, 100.0], [0, 1.0, 0, -50.0], [0, 0, 3.0, 7.0], [0, 0, 0, 1.0]])
    vertices, _ = surface_mesh(mask, affine)
    centre = vertices.mean(axis=0)
    assert centre == pytest.approx([100 + 0.5 * 4.5, -50 + 7.5, 7 + 3 * 7.5], abs=0.3)


def test_the_triangle_budget_is_kept_by_coarser_cells():
    mask = ball(radius=14)
    fine_vertices, fine = surface_mesh(mask, np.eye(4), max_triangles=100_000)
    _, coarse = surface_mesh(mask, np.eye(4), max_triangles=800)
    assert len(coarse) <= 800 < len(fine)


def test_an_empty_mask_has_no_surface():
    vertices, faces = surface_mesh(np.zeros((4, 4, 4), bool), np.eye(4))
    assert vertices.shape == (0, 3) and faces.shape == (0, 3)
