"""Training loss on heatmaps."""
import torch.nn as nn


class JointsMSELoss(nn.Module):
    """Mean over joints of 0.5 * MSE(pred_j * w_j, gt_j * w_j).

    Every joint has the same number of heatmap pixels, so the mean over joints of
    per-joint means equals one mean over everything; computing it that way avoids a
    loop over joints. The loss is taken in float32 so that it stays accurate when
    the network runs under autocast.
    """

    def __init__(self, use_target_weight):
        super().__init__()
        self.use_target_weight = use_target_weight

    def forward(self, output, target, target_weight):
        batch_size, num_joints = output.shape[:2]
        pred = output.float().reshape(batch_size, num_joints, -1)
        gt = target.float().reshape(batch_size, num_joints, -1)
        if self.use_target_weight:
            weight = target_weight.float().reshape(batch_size, num_joints, 1)
            pred = pred * weight
            gt = gt * weight
        return 0.5 * ((pred - gt) ** 2).mean()
