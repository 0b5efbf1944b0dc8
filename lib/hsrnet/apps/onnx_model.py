"""ONNX export of a pose network and an onnxruntime runner for the exported file.

The exported graph is the network alone: input `images` (batch, 3, H, W) float32,
the crops normalised exactly as for the torch model (ImageNet mean/std, in the
yaml's channel order), output `heatmaps` (batch, J, h, w) float32. The batch is
dynamic; H, W, J, h, w are fixed by the yaml. The file also records, as metadata,
the network's name (e.g. pose_hsrnet_59) and the yaml's sizes, so that a file is
refused, with one line, when it is used with a yaml it does not fit.

`onnx` and `onnxruntime` are imported when first needed: the rest of the project
runs without them.
"""
import os
import secrets
import warnings

import numpy as np

OPSET = 17                   # run by every onnxruntime since 1.12
INPUT_NAME = 'images'
OUTPUT_NAME = 'heatmaps'
META_ARCH = 'pose_arch'
META_INPUT = 'image_size'          # "w,h"
META_HEATMAP = 'heatmap_size'      # "w,h"
META_JOINTS = 'num_joints'


def _expected(cfg):
    return {'image_size': tuple(cfg.MODEL.IMAGE_SIZE),
            'heatmap_size': tuple(cfg.MODEL.EXTRA.HEATMAP_SIZE),
            'num_joints': cfg.MODEL.NUM_JOINTS}


def export_onnx(model, cfg, path, opset=OPSET):
    """Write `model` (a torch pose network, put in eval mode on the CPU) to `path`
    as ONNX with a dynamic batch, atomically: a temporary file in the same folder,
    checked by onnx.checker, then renamed. Returns the path."""
    import onnx
    import torch

    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(directory, '.{}.{}.tmp'.format(os.path.basename(path),
                                                      secrets.token_hex(4)))
    width, height = cfg.MODEL.IMAGE_SIZE
    model = model.to('cpu', memory_format=torch.contiguous_format).eval()
    dummy = torch.zeros(2, 3, height, width)
    try:
        with warnings.catch_warnings(), torch.no_grad():
            # the TorchScript-based exporter: needs no onnxscript and handles every
            # layer of these networks
            warnings.simplefilter('ignore')
            torch.onnx.export(model, (dummy,), tmp, dynamo=False, opset_version=opset,
                              input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                              dynamic_axes={INPUT_NAME: {0: 'batch'},
                                            OUTPUT_NAME: {0: 'batch'}})
        proto = onnx.load(tmp)
        expected = _expected(cfg)
        meta = {META_ARCH: getattr(model, 'arch', type(model).__name__),
                META_INPUT: '{},{}'.format(*expected['image_size']),
                META_HEATMAP: '{},{}'.format(*expected['heatmap_size']),
                META_JOINTS: str(expected['num_joints'])}
        for key, value in meta.items():
            entry = proto.metadata_props.add()
            entry.key, entry.value = key, value
        onnx.checker.check_model(proto)
        onnx.save(proto, tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


class OnnxPoseNet:
    """An exported pose network run by onnxruntime: `net(images)` with images a
    float32 array (N, 3, H, W) returns heatmaps (N, J, h, w) float32.

    Raises ValueError, naming the file, when it is not an ONNX model or when its
    input/output shapes (or recorded sizes) do not fit `cfg`."""

    def __init__(self, path, cfg=None, threads=None, providers=None):
        import onnxruntime as ort

        self.path = path = os.fspath(path)
        if not os.path.isfile(path):
            raise FileNotFoundError('ONNX model file not found: {}'.format(path))
        options = ort.SessionOptions()
        options.log_severity_level = 3
        if threads:
            options.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(
                path, options, providers=providers or ['CPUExecutionProvider'])
        except Exception as err:  # onnxruntime raises its own types for unreadable files
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise ValueError('{}: not an ONNX model onnxruntime can run ({})'.format(
                path, first[:200])) from None
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if len(inputs) != 1 or len(outputs) < 1:
            raise ValueError('{}: not a pose network (it has {} inputs and {} outputs; expected '
                             '1 image input and a heatmap output)'.format(
                                 path, len(inputs), len(outputs)))
        self.input_name, self.output_name = inputs[0].name, outputs[0].name
        self.input_shape, self.output_shape = inputs[0].shape, outputs[0].shape
        self.metadata = dict(self.session.get_modelmeta().custom_metadata_map)
        self.arch = self.metadata.get(META_ARCH, '')
        if cfg is not None:
            self.check_fits(cfg)

    def check_fits(self, cfg):
        expected = _expected(cfg)
        width, height = expected['image_size']
        hm_w, hm_h = expected['heatmap_size']
        joints = expected['num_joints']
        want_in = [3, height, width]
        want_out = [joints, hm_h, hm_w]
        got_in, got_out = list(self.input_shape[1:]), list(self.output_shape[1:])
        if (len(self.input_shape) != 4 or len(self.output_shape) != 4
                or got_in != want_in or got_out != want_out):
            raise ValueError(
                '{}: an ONNX model of another network: input {} -> output {}, but the yaml '
                'wants input [batch, 3, {}, {}] -> heatmaps [batch, {}, {}, {}]'.format(
                    self.path, self.input_shape, self.output_shape, height, width,
                    joints, hm_h, hm_w))

    def __call__(self, images):
        images = np.ascontiguousarray(images, dtype=np.float32)
        return self.session.run([self.output_name], {self.input_name: images})[0]
