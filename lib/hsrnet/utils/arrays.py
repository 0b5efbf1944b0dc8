"""Small numpy helpers shared across the stack."""
import numpy as np


def group_indices(keys):
    """Positions of equal keys, grouped: a list of index arrays, the groups in
    order of first appearance and each group in increasing order."""
    if len(keys) == 0:
        return []
    _, first, inverse = np.unique(np.asarray(keys), return_index=True, return_inverse=True)
    order = np.argsort(inverse, kind='stable')
    groups = np.split(order, np.cumsum(np.bincount(inverse))[:-1])
    return [groups[g] for g in np.argsort(first)]
