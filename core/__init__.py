"""LiverSeg engine: liver and liver-lesion segmentation of abdominal CT.

Importable without Streamlit. Data takes one path:
read (``core.imageio.nifti``) -> preprocess (``core.inference.preprocessing``) -> predict
(``core.inference.segmenter``) -> post-process (``core.postprocessing.cleanup``) -> export
(``core.imageio.nifti``), with ``core.evaluation.lesions``, ``core.evaluation.metrics`` and ``core.viewing.figures``
reading the result.
"""
