"""Accuracy shown during training: PCK measured on the heatmaps themselves."""
import numpy as np
import torch
from torch.profiler import record_function

from hsrnet.head.codec import TARGET_TYPES, argmax_coords


def _as_numpy(heatmaps):
    if isinstance(heatmaps, torch.Tensor):
        return heatmaps.detach().float().cpu().numpy()
    return np.asarray(heatmaps, dtype=np.float32)


def accuracy(output, target, hm_type='gaussian', thr=0.5):
    """Heatmap PCK of `output` against `target`, both (N, joints, h, w).

    The argmax of each predicted heatmap is compared with the argmax of its target;
    distances are divided by (h, w) / 10 (the original pairs h with x and w with y,
    which is kept so that numbers stay comparable) and count as hits below `thr`.
    Only joints whose target has a positive maximum take part.

    Returns (acc, avg_acc, cnt, pred): acc[0] is the average and acc[1 + j] the
    accuracy of joint j (-1 when no sample has that joint), avg_acc the mean over
    joints that have one, cnt how many joints that is, pred the (N, joints, 2)
    argmax positions in heatmap pixels.
    """
    if hm_type not in TARGET_TYPES:
        raise ValueError("accuracy: hm_type must be one of {}, got {!r}".format(
            TARGET_TYPES, hm_type))
    output, target = _as_numpy(output), _as_numpy(target)
    pred, _ = argmax_coords(output)
    gt, gt_maxvals = argmax_coords(target)
    height, width = output.shape[2:]
    norm = np.array([height, width], dtype=np.float32) / 10
    dists = np.linalg.norm((pred - gt) / norm, axis=-1)          # (N, joints)
    valid = gt_maxvals[..., 0] > 0
    num_valid = valid.sum(axis=0)
    num_hits = ((dists < thr) & valid).sum(axis=0)
    has_joint = num_valid > 0
    joint_acc = np.where(has_joint, num_hits / np.maximum(num_valid, 1), -1.0)
    cnt = int(has_joint.sum())
    avg_acc = float(joint_acc[has_joint].mean()) if cnt else 0.0
    acc = np.concatenate([[avg_acc], joint_acc])
    return acc, avg_acc, cnt, pred


@record_function('accuracy')   # a region of utils.profiling's account
def accuracy_on_device(output, target, thr=0.5):
    """`accuracy`'s (avg_acc, cnt) as two 0-d float tensors on the heatmaps' device,
    without a host sync: the training loop sums them and reads the sum every
    PRINT_FREQ iterations. Same definition, ties included (first maximum)."""
    output, target = output.detach().float(), target.detach().float()
    n, j, height, width = output.shape

    def argmax_xy(heatmaps):
        flat = heatmaps.reshape(n, j, -1)
        maxvals, idx = flat.max(dim=2)
        xy = torch.stack([idx % width, torch.div(idx, width, rounding_mode='floor')], -1)
        return xy.float() * (maxvals > 0).unsqueeze(-1), maxvals

    pred, _ = argmax_xy(output)
    gt, gt_maxvals = argmax_xy(target)
    # x over height / 10 and y over width / 10, as the original; python numbers, not
    # a tensor made from host data (on CUDA, a copy that waits for the device)
    offset = pred - gt
    dists = torch.linalg.vector_norm(torch.stack([offset[..., 0] / (height / 10),
                                                  offset[..., 1] / (width / 10)], dim=-1),
                                     dim=-1)
    valid = gt_maxvals > 0
    num_valid = valid.sum(dim=0)
    num_hits = ((dists < thr) & valid).sum(dim=0)
    has_joint = num_valid > 0
    joint_acc = num_hits / num_valid.clamp(min=1)
    cnt = has_joint.sum().float()
    avg_acc = torch.where(has_joint, joint_acc, 0.0).sum() / cnt.clamp(min=1)
    return avg_acc, cnt
