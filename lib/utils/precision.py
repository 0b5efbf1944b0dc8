"""Mixed precision (AMP.ENABLED, AMP.DTYPE) and memory format (CHANNELS_LAST)."""
import contextlib
import logging

import torch

logger = logging.getLogger(__name__)


class Precision:
    """How the forward pass runs: autocast dtype, loss scaling, memory format.

    float16 on the CPU is slow and badly supported, so there it becomes bfloat16
    (said once in the log). Loss scaling is needed only for float16 on CUDA.
    """

    def __init__(self, cfg, device):
        self.device_type = device.type
        self.enabled = bool(cfg.AMP.ENABLED)
        self.dtype = getattr(torch, cfg.AMP.DTYPE)
        if self.enabled and self.device_type == 'cpu' and self.dtype == torch.float16:
            logger.info('AMP: float16 autocast is not supported on the CPU; using bfloat16')
            self.dtype = torch.bfloat16
        self.memory_format = (torch.channels_last if cfg.CHANNELS_LAST
                              else torch.contiguous_format)
        use_scaler = self.enabled and self.device_type == 'cuda' and self.dtype == torch.float16
        self.scaler = torch.amp.GradScaler('cuda', enabled=use_scaler)

    def autocast(self):
        if not self.enabled:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device_type, dtype=self.dtype)

    def prepare_model(self, model):
        return model.to(memory_format=self.memory_format)

    def prepare_input(self, images, device):
        return images.to(device, non_blocking=True).contiguous(memory_format=self.memory_format)

    def describe(self):
        amp = 'autocast {}'.format(str(self.dtype).replace('torch.', '')) if self.enabled \
            else 'float32'
        fmt = 'channels_last' if self.memory_format == torch.channels_last else 'contiguous'
        return '{} on {}, {}'.format(amp, self.device_type, fmt)
