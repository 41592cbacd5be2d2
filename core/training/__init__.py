"""Training: labelled cases in, a model folder (weights + card) out, with progress for whoever watches.

Path of the data, one module per step::

    discovery.discover(dirs) ─► cases (image, label, kind) ─► run.split_cases (train / held-out)
      ─► datamodule: cached preprocessing (core.inference.preprocessing, the transforms inference uses),
         core.training.augmentation per volume, TorchIO Queue + LabelSampler
      ─► module.LiverSegModule: UNet, loss.segmentation_loss (Dice + CE, liver-only labels), AdamW,
         whole-volume validation (core.inference.sliding_window)
      ─► callbacks: progress.jsonl + train.log (progress), atomic checkpoints
      ─► run.train: Lightning Trainer, best weights ─► model.pt + card.json

``options.TrainOptions`` is the one definition of ``python -m core train``'s options:
the CLI, the run, the job runner (``core.jobs``), the Train page's form and
cross-validation all read it. ``options`` and ``progress`` import no torch, so
``--help``, the Train page and the job runner answer at once.
"""
