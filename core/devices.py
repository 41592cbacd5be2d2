"""Where a network may run and at what precision: the one vocabulary from every front end to Lightning.

The command line (``segment --device/--precision``, ``train --accelerator/--precision``), the
Segment page, the Train page and the training jobs all offer these words;
``core.inference.segmenter`` turns them into a torch device and autocast, and
``core.training.run`` into Lightning's accelerator and precision names. Kept apart from both
so that the command line's parser and ``core.jobs`` read them without importing torch.
"""

from __future__ import annotations

#: ``"auto"``: a CUDA GPU when there is one, else the CPU.
DEVICES = ("auto", "cpu", "cuda")
#: ``"auto"``: mixed precision on a GPU, float32 on the CPU; ``"mixed"``: also bfloat16 on CPUs
#: that compute it natively; ``"float32"``: never mixed (``core.inference.segmenter.Segmenter``).
PRECISIONS = ("auto", "mixed", "float32")
