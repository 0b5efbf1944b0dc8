"""HSRNet and HSR-MSNet: top-down multi-person pose estimation.

    from hsrnet import PoseEstimator
    estimator = PoseEstimator('experiment.yaml', 'final_state.pth.tar')
    estimator = PoseEstimator(None, 'final_state.pth.tar')   # the config it records

The packages, from the top of the import order down (each imports only its own
floor and those below; docs/architecture.md): runner (the scripts' command line and
run setup) and apps (PoseEstimator, person boxes, tracking, media, ONNX); engine
(training and validation loops, the Trainer, CUDA graphs, precision, the heatmap
cache); config; data (datasets, loaders, samplers, device batching) and samples (the
generated sample data); head (codec, decoding, loss, accuracy), evaluation (COCO AP,
PCKh) and models (the networks); nms; utils (nothing that knows a config or a
dataset).
"""
__version__ = '1.0.0'

__all__ = ['PoseEstimator', '__version__']


def __getattr__(name):
    # imported on first use: `import hsrnet.utils.x` stays light
    if name == 'PoseEstimator':
        from hsrnet.apps.estimator import PoseEstimator
        return PoseEstimator
    raise AttributeError('module {!r} has no attribute {!r}'.format(__name__, name))
