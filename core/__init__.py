"""LiverSeg engine: liver and liver-lesion segmentation of abdominal CT, importable without Streamlit.

Each folder is a stage, and data takes one path through them: read (``core.imageio``) ->
``core.pipeline.run``: segment (``core.inference``, ``core.postprocessing``), measure and score
(``core.evaluation``) -> write and show (``core.imageio``, ``core.viewing``). ``core.model``
holds what a model is, ``core.training`` makes one, ``core.jobs`` runs training in the
background and ``core.server`` holds what a shared server needs.
"""
