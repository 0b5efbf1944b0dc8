"""Tiny ONNX person detectors for the tests: torch modules that emit fixed
tensors in each output layout infer.py --detector reads (apps.detector_layouts),
with known boxes baked in."""
import warnings


def export_fixed(path, outputs, size=256, open_axis=None):
    """An ONNX 'detector' that emits the given tensors (name -> torch tensor) for
    any (1, 3, size, size) picture. With `open_axis` {output name: axis} the
    batch is dynamic and the outputs' shapes are computed in the graph, so the
    file declares the batch axis and that axis by a name, not a number."""
    import torch

    class Fixed(torch.nn.Module):
        def forward(self, x):
            zero = x.mean() * 0
            out = []
            for name, t in outputs.items():
                if open_axis and name in open_axis:
                    shape = [-1 if i == open_axis[name] else n for i, n in enumerate(t.shape)]
                    t = t.reshape([x.shape[0]] + shape[1:])
                out.append(t + zero.to(t.dtype))
            return tuple(out)

    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        torch.onnx.export(Fixed(), (torch.zeros(1, 3, size, size),), str(path), dynamo=False,
                          input_names=['images'], output_names=list(outputs),
                          dynamic_axes={'images': {0: 'batch'}} if open_axis else None)
    return str(path)


def yolo_head(classes=2, anchors=32):
    """(1, 4 + C, A): two persons (one seen by two overlapping anchors), an object of
    class 1, a weak person; coordinates in the 256x256 input's pixels."""
    import torch
    head = torch.zeros(1, 4 + classes, anchors)
    for anchor, (box, scores) in {3: ([100, 64, 60, 100], [0.9, 0.05]),
                                  4: ([101, 65, 62, 102], [0.85, 0.0]),
                                  7: ([200, 60, 40, 80], [0.7, 0.1]),
                                  9: ([50, 50, 30, 30], [0.05, 0.95]),
                                  12: ([150, 150, 40, 40], [0.2, 0.0])}.items():
        head[0, :, anchor] = torch.tensor(box + scores, dtype=torch.float32)
    return head


# a 512x256 picture is letterboxed into the 256x256 input at zoom 0.5
YOLO_BOXES = [[140, 28, 120, 200, 0.9], [360, 40, 80, 160, 0.7]]

# (1, 6, 6): 6 rows of [x1, y1, x2, y2, score, class], or 6 anchors of 2 classes
AMBIGUOUS = [[60, 20, 110, 220, 0.9, 0], [100, 40, 200, 240, 0.8, 0], [80, 0, 0, 0, 0, 0],
             [160, 0, 0, 0, 0, 0], [0.9, 0, 0, 0, 0.1, 0], [0, 0, 0, 0, 0, 0]]
AMBIGUOUS_AS_ROWS = [[60, 20, 50, 200, 0.9], [100, 40, 100, 200, 0.8]]
AMBIGUOUS_AS_YOLO = [[20, 20, 80, 160, 0.9]]     # anchor 0: centre (60, 100), 80 x 160


def ambiguous_detector(path):
    import torch
    return export_fixed(path, {'out': torch.tensor([AMBIGUOUS], dtype=torch.float32)})


def unknown_detector(path):
    """Outputs no layout fits: weird (1, 3, 2) and extra (4,)."""
    import torch
    return export_fixed(path, {'weird': torch.zeros(1, 3, 2), 'extra': torch.zeros(4)})
