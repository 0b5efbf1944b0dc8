"""Mixed precision (AMP.ENABLED, AMP.DTYPE) and memory format (CHANNELS_LAST,
and SPEED.CPU_BLOCKED_LAYOUT for float32 inference on the CPU), with the CPU's
own capabilities taken into account.

- bfloat16 autocast is fast only where the CPU computes bfloat16 natively
  (AVX512-BF16 / AMX); on an AVX2-only CPU it is emulated and runs 10-20x slower
  than float32. It is therefore never used there: AMP with bfloat16 (or float16,
  which becomes bfloat16 on the CPU) on such a CPU logs a warning and runs in float32.
- `CPU_AUTO: true` (new, off in the paper's yamls) chooses the memory format on the
  CPU from what it has instead of CHANNELS_LAST: channels_last on x86 CPUs with
  AVX2 or AVX-512, where oneDNN has channels_last kernels (measured on the demo's
  training step, AMD EPYC, 2 cores: as fast as or faster than the contiguous layout,
  AVX-512 and AVX2 alike), the contiguous layout elsewhere (not measured there).
"""

import contextlib
import logging
import platform

import torch

from hsrnet.models.blocked_layout import blocked_layout_net

logger = logging.getLogger(__name__)


def cpu_features():
    """{'capability': ATen's vector ISA ('AVX512', 'AVX2', 'DEFAULT', ...),
    'native_bf16': whether oneDNN computes bfloat16 natively}. Both follow the
    ATEN_CPU_CAPABILITY / ONEDNN_MAX_CPU_ISA environment variables, which is how an
    AVX2-only CPU is emulated on a bigger one."""
    capability = torch.backends.cpu.get_cpu_capability()
    try:
        native_bf16 = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        native_bf16 = False
    return {'capability': capability, 'native_bf16': native_bf16}


def cpu_name():
    """The CPU's model name (/proc/cpuinfo on Linux), which every CPU time must name."""
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('model name'):
                    return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or 'unknown CPU'


def describe_cpu(features=None):
    """'AMD EPYC (AVX512, native bf16), 2 threads': the CPU a figure was measured on."""
    features = features or cpu_features()
    return '{} ({}{}), {} threads'.format(
        cpu_name(), features['capability'], ', native bf16' if features['native_bf16'] else '',
        torch.get_num_threads())


def cpu_prefers_channels_last(features=None):
    """channels_last where oneDNN has channels_last kernels for this CPU (x86 with
    AVX2 or AVX-512, see the module docstring); the contiguous layout elsewhere."""
    features = features or cpu_features()
    return features['capability'].startswith(('AVX2', 'AVX512'))


class Precision:
    """How the forward pass runs: autocast dtype, loss scaling, memory format.

    float16 on the CPU is slow and badly supported, so there it becomes bfloat16
    (said once in the log); bfloat16 on a CPU without native bfloat16 becomes
    float32 (a warning). Loss scaling is needed only for float16 on CUDA.
    `features` (tests) stands for cpu_features().
    """

    def __init__(self, cfg, device, features=None):
        self.device_type = device.type
        self.enabled = bool(cfg.AMP.ENABLED)
        self.dtype = getattr(torch, cfg.AMP.DTYPE)
        channels_last = bool(cfg.CHANNELS_LAST)
        if self.device_type == 'cpu':
            features = features or cpu_features()
            if self.enabled and self.dtype == torch.float16:
                logger.info('AMP: float16 autocast is not supported on the CPU; using bfloat16')
                self.dtype = torch.bfloat16
            if self.enabled and not features['native_bf16']:
                logger.warning('AMP: this CPU (%s) has no native bfloat16, where bfloat16 '
                               'autocast runs 10-20x slower than float32; using float32',
                               features['capability'])
                self.enabled = False
            if cfg.get('CPU_AUTO', False):
                channels_last = cpu_prefers_channels_last(features)
                logger.info('CPU_AUTO: %s: %s', describe_cpu(features),
                            'channels_last' if channels_last else 'contiguous layout')
        self.memory_format = (torch.channels_last if channels_last
                              else torch.contiguous_format)
        self.blocked_layout = bool(cfg.SPEED.CPU_BLOCKED_LAYOUT)
        use_scaler = self.enabled and self.device_type == 'cuda' and self.dtype == torch.float16
        self.scaler = torch.amp.GradScaler('cuda', enabled=use_scaler)

    def autocast(self, cache=True):
        """`cache` False: no cache of the weights' casts (inside a CUDA graph capture)."""
        if not self.enabled:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device_type, dtype=self.dtype,
                              cache_enabled=cache)

    def prepare_model(self, model):
        return model.to(memory_format=self.memory_format)

    def inference_network(self, model, image_size):
        """The network that validation and inference call: with
        SPEED.CPU_BLOCKED_LAYOUT, for float32 on the CPU in the contiguous layout,
        the network in oneDNN's blocked layout (models.blocked_layout: the same
        heatmaps bit for bit, checked on a probe batch; build it again when the
        weights change); `model` itself otherwise. `model` must be in eval mode."""
        if not (self.blocked_layout and self.device_type == 'cpu' and not self.enabled
                and self.memory_format == torch.contiguous_format):
            return model
        blocked = blocked_layout_net(model, image_size)
        if blocked is None:
            return model
        logger.info('SPEED.CPU_BLOCKED_LAYOUT: float32 inference in oneDNN\'s blocked layout '
                    '(bit for bit the contiguous pass, checked on a probe batch)')
        return blocked

    def prepare_input(self, images, device):
        return images.to(device, non_blocking=True).contiguous(memory_format=self.memory_format)

    def describe(self):
        amp = 'autocast {}'.format(str(self.dtype).replace('torch.', '')) if self.enabled \
            else 'float32'
        fmt = 'channels_last' if self.memory_format == torch.channels_last else 'contiguous'
        return '{} on {}, {}'.format(amp, self.device_type, fmt)
