"""LiverSeg engine: liver and liver-lesion segmentation of abdominal CT.

Importable without Streamlit. Data takes one path:
read (``core.io``) -> preprocess (``core.preprocess``) -> predict
(``core.inference``) -> post-process (``core.postprocess``) -> export
(``core.io``), with ``core.lesions``, ``core.metrics`` and ``core.figures``
reading the result.
"""
