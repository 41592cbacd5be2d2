"""The 3D view of a segmentation: liver and lesion surfaces as a Plotly figure.

(Slices are drawn by ``core.viewing.slices`` for the report; the browser's viewer draws its own from ``core.viewing.viewer_volume``.)
"""

from __future__ import annotations

import plotly.graph_objects as go

from core.evaluation.surface import surface_mesh
from core.segmentation import LESION, LIVER
from core.viewing.slices import LESION_RGB, LIVER_RGB, DisplayVolume


def _rgb(colour: tuple[int, int, int]) -> str:
    return "rgb({},{},{})".format(*colour)


def surface_figure(volume: DisplayVolume, max_triangles: int = 40_000, height: int = 560) -> go.Figure:
    """Liver (translucent) and lesions (solid) as surface meshes in RAS+ mm, seen from the front.

    ``max_triangles`` bounds the two meshes together so the view rotates smoothly.
    """
    traces = []
    liver_mask, lesion_mask = volume.labels >= LIVER, volume.labels == LESION
    lesion_share = 0.3 if lesion_mask.any() else 0.0
    for name, mask, colour, opacity, budget in (
        ("Liver", liver_mask, LIVER_RGB, 0.35, max_triangles * (1 - lesion_share)),
        ("Lesions", lesion_mask, LESION_RGB, 1.0, max_triangles * lesion_share),
    ):
        if not mask.any() or budget < 1:
            continue
        vertices, faces = surface_mesh(mask, volume.affine, int(budget))
        traces.append(go.Mesh3d(
            x=vertices[:, 0], y=vertices[:, 1], z=vertices[:, 2], i=faces[:, 0], j=faces[:, 1], k=faces[:, 2],
            name=name, showlegend=True, color=_rgb(colour), opacity=opacity, flatshading=False, hoverinfo="name",
            lighting=dict(ambient=0.45, diffuse=0.8, specular=0.15, roughness=0.6),
        ))
    figure = go.Figure(traces)
    axis = dict(showbackground=False, showticklabels=False, title="", showgrid=False, zeroline=False, showspikes=False)
    figure.update_layout(
        height=height, margin=dict(l=0, r=0, t=0, b=0), legend=dict(x=0.01, y=0.99),
        # From the front (anterior, +y) with the head up: the patient's right is on the screen's left.
        scene=dict(aspectmode="data", xaxis=axis, yaxis=axis, zaxis=axis,
                   camera=dict(eye=dict(x=0.0, y=1.5, z=0.25), up=dict(x=0, y=0, z=1))),
        uirevision="surface",
    )
    return figure
