"""Plotly figures of a segmentation: a slice viewer figure and a 3D surface view.

The slice figure is made to be redrawn on every slider move, so it is small: the
slice itself travels as one PNG (a layout image), and hovering reads from an
invisible heatmap sampled at most ``HOVER_CELLS`` per side, which carries the HU,
the position in mm and the label in words. Axes are RAS+ millimetres, so the
picture keeps its physical aspect ratio (``scaleanchor``) and the position shown
on hover is the scanner's.
"""

from __future__ import annotations

import base64

import numpy as np
import plotly.graph_objects as go

from core.segmentation import LESION, LIVER
from core.slices import EDGE_LETTERS, LESION_RGB, LIVER_RGB, THROUGH_AXIS, DisplayVolume, View, render
from core.surface import surface_mesh

#: The hover grid's size on the longer side (cells); finer costs payload on every slice move.
HOVER_CELLS = 96
_TRANSPARENT = [[0.0, "rgba(0,0,0,0)"], [1.0, "rgba(0,0,0,0)"]]
_WORDS = np.array(["", "liver", "lesion"])  # outside the liver says nothing: most cells, least payload
_NAMES = np.array(["none", "liver", "lesion"])


def _hover_words(labels: np.ndarray, reference: np.ndarray | None) -> np.ndarray:
    """Each cell's label in words; where a reference disagrees, both."""
    labels = np.minimum(labels, LESION)
    model = _WORDS[labels]
    if reference is None:
        return model
    reference = np.minimum(reference, LESION)
    both = np.char.add(np.char.add("model: ", _NAMES[labels]), np.char.add(", reference: ", _NAMES[reference]))
    return np.where(labels == reference, model, both)


def slice_figure(volume: DisplayVolume, plane: str, index: int, view: View, height: int = 620) -> go.Figure:
    """Slice ``index`` of ``plane`` with overlays, orientation letters and hover readout."""
    image = render(volume, plane, index, view)
    horizontal, vertical = volume.plane_axes(plane)
    through = THROUGH_AXIS[plane]
    h_mm, v_mm = volume.axis_mm(horizontal), volume.axis_mm(vertical)
    half_h, half_v = volume.spacing[horizontal] / 2, volume.spacing[vertical] / 2
    # Screen left is the highest R (or A) coordinate, screen top the highest A (or S).
    left, right, top, bottom = h_mm[-1] + half_h, h_mm[0] - half_h, v_mm[-1] + half_v, v_mm[0] - half_v

    step = max(1, int(np.ceil(max(len(h_mm), len(v_mm)) / HOVER_CELLS)))
    cells = [slice(step // 2, None, step)] * 3
    cells[through] = index

    def sampled(array: np.ndarray) -> np.ndarray:
        # Data order (coordinates increasing); the reversed x axis mirrors it like the image.
        return np.ascontiguousarray(array[tuple(cells)].T)

    reference = None if volume.reference is None else sampled(volume.reference)
    coordinate = {horizontal: "%{x:.1f}", vertical: "%{y:.1f}", through: f"{volume.axis_mm(through)[index]:.1f}"}
    hover = go.Heatmap(
        x=h_mm[step // 2::step],
        y=v_mm[step // 2::step],
        z=sampled(volume.hu),
        text=_hover_words(sampled(volume.labels), reference),
        colorscale=_TRANSPARENT,
        showscale=False,
        zsmooth="fast",  # draws one small bitmap instead of a rectangle per cell: it is invisible anyway
        hovertemplate="%{z} HU<br>(" + ", ".join(coordinate[a] for a in range(3)) + ") mm RAS<br><b>%{text}</b><extra></extra>",
    )
    figure = go.Figure(hover)
    figure.add_layout_image(
        source="data:image/jpeg;base64," + base64.b64encode(image.jpeg()).decode(),
        xref="x", yref="y", x=left, y=top, sizex=left - right, sizey=top - bottom,
        xanchor="left", yanchor="top", sizing="stretch", layer="below",
    )
    letters = EDGE_LETTERS[plane]
    for text, x, y, xanchor, yanchor in (
        (letters[0], 0.0, 0.5, "left", "middle"),
        (letters[1], 1.0, 0.5, "right", "middle"),
        (letters[2], 0.5, 1.0, "center", "top"),
        (letters[3], 0.5, 0.0, "center", "bottom"),
    ):
        figure.add_annotation(text=text, x=x, y=y, xref="x domain", yref="y domain", xanchor=xanchor, yanchor=yanchor,
                              showarrow=False, font=dict(color="#ffd54f", size=16))
    figure.update_xaxes(range=[left, right], visible=False, constrain="domain", fixedrange=False)
    figure.update_yaxes(range=[bottom, top], visible=False, scaleanchor="x", scaleratio=1, constrain="domain")
    figure.update_layout(
        height=height, margin=dict(l=0, r=0, t=0, b=0), plot_bgcolor="black", paper_bgcolor="black",
        dragmode="pan", hovermode="closest", uirevision=plane,  # zoom and pan survive slice moves
        hoverlabel=dict(bgcolor="white", font_size=13),
    )
    return figure


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
