"""Parts shared by the three pose networks: the ResNet stem and stages, the plain
bottleneck, the deconvolution head, and the `PoseNet` base class with weight
initialisation and ImageNet loading.

Module and parameter names follow the original's checkpoints exactly (`conv1`,
`layer1.0.downsample.0`, `deconv_layers.3`, `final_layer`, ...), so that its
released weights load unchanged.
"""
import logging
import os
from collections import Counter
from dataclasses import dataclass, field

from torch import nn

from hsrnet.utils.errors import ConfigError
from hsrnet.utils.checkpoint import read_checkpoint, state_dict_from

logger = logging.getLogger(__name__)

BN_MOMENTUM = 0.1
EXPANSION = 4                      # bottleneck output channels = 4 x its width
RESNET_WIDTHS = (64, 128, 256, 512)
NEW_LAYER_STD = 0.001              # init of layers without an ImageNet counterpart
# (padding, output_padding) that make a stride-2 transposed conv double the size exactly
DECONV_PADDING = {4: (1, 0), 3: (1, 1), 2: (0, 0)}


def batch_norm(channels):
    return nn.BatchNorm2d(channels, eps=1e-5, momentum=BN_MOMENTUM)


def conv1x1(in_channels, out_channels, stride=1):
    return nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)


def conv3x3(in_channels, out_channels, stride=1, dilation=1):
    return nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=dilation,
                     dilation=dilation, bias=False)


def projection(in_channels, out_channels, stride=1):
    """The 1x1 conv + BN shortcut of a block whose input and output shapes differ."""
    return nn.Sequential(conv1x1(in_channels, out_channels, stride), batch_norm(out_channels))


class ResidualBlock(nn.Module):
    """out = ReLU(branch(x) + shortcut(x)). The shortcut is the identity, or a
    projection stored under `shortcut_name` (the original's key for it)."""
    shortcut_name = 'downsample'
    last_norm_name = 'bn3'   # the BN that ends the branch (MODEL.ZERO_INIT_RESIDUAL)

    def _set_projection(self, module):
        setattr(self, self.shortcut_name, module)

    def branch(self, x):
        raise NotImplementedError

    def forward(self, x):
        proj = getattr(self, self.shortcut_name)
        shortcut = x if proj is None else proj(x)
        return self.relu(self.branch(x) + shortcut)


class Bottleneck(ResidualBlock):
    """conv1 1x1 -> conv2 3x3 (stride, dilation) -> conv3 1x1 to 4x the width."""

    def __init__(self, inplanes, planes, stride=1, downsample=None, dilation=1):
        super().__init__()
        self.conv1 = conv1x1(inplanes, planes)
        self.bn1 = batch_norm(planes)
        self.conv2 = conv3x3(planes, planes, stride, dilation)
        self.bn2 = batch_norm(planes)
        self.conv3 = conv1x1(planes, planes * EXPANSION)
        self.bn3 = batch_norm(planes * EXPANSION)
        self.relu = nn.ReLU(inplace=True)
        self._set_projection(downsample)

    def branch(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.bn3(self.conv3(out))


def make_resnet_stage(block, inplanes, planes, blocks, stride):
    """`blocks` blocks; the first one strides and projects when the shape changes."""
    out_channels = planes * EXPANSION
    downsample = None
    if stride != 1 or inplanes != out_channels:
        downsample = projection(inplanes, out_channels, stride)
    layers = [block(inplanes, planes, stride, downsample)]
    layers += [block(out_channels, planes) for _ in range(1, blocks)]
    return nn.Sequential(*layers)


def check_head(extra):
    """The head's keys (MODEL.EXTRA) agree: one deconvolution filter count and kernel
    per layer, kernels that double the size exactly, a 1x1 or 3x3 final layer. The one
    place these are checked (check_config runs it before anything is built)."""
    filters, kernels = extra.NUM_DECONV_FILTERS, extra.NUM_DECONV_KERNELS
    for key, values in (('NUM_DECONV_FILTERS', filters), ('NUM_DECONV_KERNELS', kernels)):
        if len(values) != extra.NUM_DECONV_LAYERS:
            raise ConfigError('MODEL.EXTRA.{} has {} entries but NUM_DECONV_LAYERS is {}'
                              .format(key, len(values), extra.NUM_DECONV_LAYERS))
    for kernel in kernels:
        if kernel not in DECONV_PADDING:
            raise ConfigError('MODEL.EXTRA.NUM_DECONV_KERNELS: kernel {} is not one of {}'
                              .format(kernel, ', '.join(map(str, sorted(DECONV_PADDING)))))
    if extra.FINAL_CONV_KERNEL not in (1, 3):
        raise ConfigError('MODEL.EXTRA.FINAL_CONV_KERNEL must be 1 or 3, got {}'
                          .format(extra.FINAL_CONV_KERNEL))


def make_deconv_layers(in_channels, filters, kernels, with_bias):
    """[ConvTranspose2d (stride 2), BN, ReLU] per entry of `filters` / `kernels`
    (checked by check_head)."""
    layers = []
    for planes, kernel in zip(filters, kernels):
        padding, output_padding = DECONV_PADDING[kernel]
        layers += [nn.ConvTranspose2d(in_channels, planes, kernel, stride=2, padding=padding,
                                      output_padding=output_padding, bias=with_bias),
                   batch_norm(planes),
                   nn.ReLU(inplace=True)]
        in_channels = planes
    return nn.Sequential(*layers)


@dataclass
class PretrainedReport:
    """What `load_imagenet_weights` did, key by key."""
    path: str
    loaded: list = field(default_factory=list)
    missing: list = field(default_factory=list)       # model keys the file did not provide
    unexpected: list = field(default_factory=list)    # file keys the model does not have
    mismatched: list = field(default_factory=list)    # same key, other shape: not loaded


def summarize_keys(keys):
    """'deconv_layers (12), final_layer (2)': key counts per top-level module."""
    counts = Counter(key.split('.', 1)[0] for key in keys)
    return ', '.join('{} ({})'.format(name, n) for name, n in counts.items()) or 'none'


def load_imagenet_weights(model, path):
    """Copy every tensor of the file at `path` whose key and shape exist in `model`."""
    state = state_dict_from(read_checkpoint(path), path)
    own = model.state_dict()
    report = PretrainedReport(path)
    for key, value in state.items():
        if key not in own:
            report.unexpected.append(key)
        elif value.shape != own[key].shape:
            report.mismatched.append('{} (file {}, model {})'.format(
                key, tuple(value.shape), tuple(own[key].shape)))
        else:
            report.loaded.append(key)
    if not report.loaded:
        raise ValueError('{}: no tensor in it fits {} (its keys look like {}): not ImageNet '
                         'weights for this network'.format(path, model.arch,
                                                           ', '.join(list(state)[:3])))
    # BN's batch counters are bookkeeping, not weights: old files lack them
    report.missing = [key for key in own if key not in state
                      and not key.endswith('num_batches_tracked')]
    model.load_state_dict({key: state[key] for key in report.loaded}, strict=False)
    logger.info('=> ImageNet weights %s: loaded %d tensors; missing (left at their init): %s;'
                ' unexpected (ignored): %s', path, len(report.loaded),
                summarize_keys(report.missing), summarize_keys(report.unexpected))
    if report.mismatched:
        logger.warning('=> ImageNet weights %s: shapes differ, not loaded: %s',
                       path, '; '.join(report.mismatched))
    return report


class PoseNet(nn.Module):
    """Stem -> the stages named in `stage_names` -> deconv head -> heatmap layer.

    Subclasses give `name`, `depths` (NUM_LAYERS -> blocks per ResNet stage),
    `stage_names`, `imagenet_source` and build their stages in `_build_stages`.
    """
    name = ''
    depths = {}
    stage_names = ()
    imagenet_source = ''
    # the forward code uses only convolutions, batch norm, ReLU, max pooling and
    # additions, all of which run on oneDNN's blocked tensors (models.blocked_layout)
    runs_in_blocked_layout = True

    def __init__(self, cfg):
        super().__init__()
        extra = cfg.MODEL.EXTRA
        if extra.NUM_LAYERS not in self.depths:
            raise ConfigError('MODEL.EXTRA.NUM_LAYERS {} is not available for {}; choose one of {}'
                              .format(extra.NUM_LAYERS, self.name,
                                      ', '.join(map(str, self.depths))))
        self.arch = '{}_{}'.format(self.name, extra.NUM_LAYERS)
        self.zero_init_residual = bool(cfg.MODEL.ZERO_INIT_RESIDUAL)
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = batch_norm(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        channels = self._build_stages(self.depths[extra.NUM_LAYERS])
        self._build_head(channels, extra, cfg.MODEL.NUM_JOINTS)

    def _build_stages(self, blocks_per_stage):
        """Create the stages; return the backbone's output channels."""
        raise NotImplementedError

    def _add_resnet_stages(self, block, blocks_per_stage):
        """layer1, layer2, ...: widths 64, 128, ...; all but the first stride 2."""
        inplanes = 64
        for index, (planes, blocks) in enumerate(zip(RESNET_WIDTHS, blocks_per_stage)):
            stride = 1 if index == 0 else 2
            setattr(self, 'layer{}'.format(index + 1),
                    make_resnet_stage(block, inplanes, planes, blocks, stride))
            inplanes = planes * EXPANSION
        return inplanes

    def _build_head(self, in_channels, extra, num_joints):
        check_head(extra)
        filters, kernels = extra.NUM_DECONV_FILTERS, extra.NUM_DECONV_KERNELS
        self.deconv_layers = make_deconv_layers(in_channels, filters, kernels,
                                                extra.DECONV_WITH_BIAS)
        kernel = extra.FINAL_CONV_KERNEL
        self.final_layer = nn.Conv2d(filters[-1] if filters else in_channels, num_joints,
                                     kernel, padding=1 if kernel == 3 else 0)

    def settings_behind(self, missing, unexpected, misshapen):
        """The config keys that explain a checkpoint's misfit: parameter names and
        (file, model) shapes -> e.g. ['MODEL.NUM_JOINTS'] when only the final
        layer's output count differs."""
        keys = []
        for name, (file_shape, own_shape) in misshapen.items():
            if name.startswith('final_layer'):
                if file_shape[0] != own_shape[0]:
                    keys.append('MODEL.NUM_JOINTS')
                if file_shape[2:] != own_shape[2:]:
                    keys.append('MODEL.EXTRA.FINAL_CONV_KERNEL')
                if file_shape[1:2] != own_shape[1:2]:
                    keys.append('MODEL.EXTRA.NUM_DECONV_FILTERS')
            elif name.startswith('deconv_layers'):
                keys.append('MODEL.EXTRA.NUM_DECONV_KERNELS' if file_shape[2:] != own_shape[2:]
                            else 'MODEL.EXTRA.NUM_DECONV_FILTERS')
            else:
                keys.append('MODEL.NAME')
        for name in missing + unexpected:
            head = name.split('.')[0]
            keys.append('MODEL.EXTRA.NUM_DECONV_LAYERS' if head in ('deconv_layers',
                                                                    'final_layer')
                        else 'MODEL.EXTRA.NUM_LAYERS' if head.startswith('layer')
                        else 'MODEL.NAME')
        return list(dict.fromkeys(keys))

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for name in self.stage_names:
            x = getattr(self, name)(x)
        return self.final_layer(self.deconv_layers(x))

    def original_unused_keys(self):
        """The state_dict keys of the layers the original built but never ran (none
        are built here): present in its checkpoints, dropped when loading them."""
        keys = set()
        for prefix, module in self.named_modules():
            dead_layers = getattr(module, 'dead_layers_in_original', None)
            if dead_layers is None:
                continue
            for layer_name, layer in dead_layers().items():
                keys.update('{}.{}.{}'.format(prefix, layer_name, key)
                            for key in layer.state_dict())
        return keys

    def layers_without_imagenet_counterpart(self):
        """Modules that start at N(0, 0.001) / BN 1, 0 whatever the backbone's init."""
        return [self.deconv_layers, self.final_layer]

    def init_weights(self, pretrained=''):
        """Initialise for training: backbone from the ImageNet file `pretrained`, or
        from scratch when it is ''. Returns the PretrainedReport, or None.

        With a file, backbone layers it does not provide keep PyTorch's default
        init, as in the original."""
        if pretrained and not os.path.isfile(pretrained):
            raise FileNotFoundError(
                "ImageNet weights not found: {}. MODEL.PRETRAINED names the ImageNet checkpoint "
                "the backbone of {} starts from: {}, placed under models/pytorch/imagenet/. "
                "To train from scratch instead, set MODEL.PRETRAINED to '' or "
                "MODEL.INIT_WEIGHTS to false (e.g. add `opts MODEL.PRETRAINED ''` to the "
                "command).".format(pretrained, self.name, self.imagenet_source))
        if not pretrained:
            self._init_from_scratch()
        for module in self.layers_without_imagenet_counterpart():
            init_new_layer(module)
        if not pretrained:
            logger.info('=> %s: no ImageNet weights (MODEL.PRETRAINED empty or '
                        'MODEL.INIT_WEIGHTS false): training from scratch', self.arch)
            return None
        return load_imagenet_weights(self, pretrained)

    def _init_from_scratch(self):
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode='fan_out', nonlinearity='relu')
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        if self.zero_init_residual:
            for module in self.modules():
                if isinstance(module, ResidualBlock):
                    nn.init.zeros_(getattr(module, module.last_norm_name).weight)


def init_new_layer(module):
    """(Transposed) convs ~ N(0, 0.001) with zero bias, BN weight 1 bias 0."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, std=NEW_LAYER_STD)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def build_pose_net(model_class, cfg, is_train):
    """The `get_pose_net` of every model module. Only training initialises weights
    (and reads MODEL.PRETRAINED); for testing, the weights come from a checkpoint."""
    model = model_class(cfg)
    if is_train:
        model.init_weights(cfg.MODEL.PRETRAINED if cfg.MODEL.INIT_WEIGHTS else '')
    return model
