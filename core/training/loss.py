"""The training loss: Dice + cross-entropy, with liver-only labels that say nothing about lesions."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from core.segmentation import BACKGROUND, LESION, LIVER


def _soft_dice(probability: torch.Tensor, target: torch.Tensor, smooth: float = 1.0) -> torch.Tensor:
    """Batch soft Dice of a probability map against a boolean mask (summed over the whole batch)."""
    target = target.to(probability.dtype)
    intersection = (probability * target).sum()
    return (2 * intersection + smooth) / (probability.sum() + target.sum() + smooth)


def segmentation_loss(
    logits: torch.Tensor, labels: torch.Tensor, liver_only: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Dice + cross-entropy, treating liver-only labels as saying nothing about lesions.

    A liver-only (0/1) label says where the liver is but not where its lesions are:
    a voxel marked 1 may be liver or an unmarked lesion. Counting it as "liver,
    not lesion" would teach the model to miss lesions, so for those samples a voxel
    marked 1 allows both classes: its cross-entropy is the negative log of the
    summed liver and lesion probability (the likelihood of the set of allowed
    classes), which never penalises a lesion inside the liver. Voxels marked 0
    (background) and 2 (synthetic lesions painted by ``core.training.augmentation``, whose truth is
    known) stay exact. The Dice part is region-based: the whole liver (liver + lesion
    probability against label > 0) for every sample, and the lesion only for samples
    with full 0/1/2 labels.

    Args:
        logits: ``(B, 3, X, Y, Z)``.
        labels: ``(B, X, Y, Z)`` integer labels 0/1/2.
        liver_only: ``(B,)`` bool, True for liver-only labels.

    Returns:
        (total loss, Dice loss, cross-entropy), scalars.
    """
    log_probability = F.log_softmax(logits.float(), dim=1)
    allowed = F.one_hot(labels, log_probability.shape[1]).movedim(-1, 1).bool()
    allowed[:, LESION] |= liver_only.view(-1, 1, 1, 1) & (labels == LIVER)
    cross_entropy = -torch.logsumexp(log_probability.masked_fill(~allowed, -torch.inf), dim=1).mean()
    probability = log_probability.exp()
    terms = [_soft_dice(probability[:, LIVER] + probability[:, LESION], labels > BACKGROUND)]
    full = ~liver_only
    if full.any():
        terms.append(_soft_dice(probability[full, LESION], labels[full] == LESION))
    dice_loss = 1 - torch.stack(terms).mean()
    return dice_loss + cross_entropy, dice_loss, cross_entropy
