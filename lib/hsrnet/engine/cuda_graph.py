"""SPEED.CUDA_GRAPHS (new, off): the whole training step (forward, loss, backward,
Adam's step) captured once as a CUDA graph, then replayed for every batch of that
shape.

Why: an eager step of HSRNet-59 launches about 500 kernels from Python. At batch 32
on an H100 the host may take longer to launch them than the GPU takes to run them
(there, bf16 autocast was no faster than TF32, which points at the host). A replay
is one launch.

With SPEED.COMPILE as well, the warm-up steps compile the model and the capture
holds the compiled (fused) kernels: on an H200 at batch 32, bf16, that took the
step from 2,879 to 3,756 samples/s (BatchNorm, ReLU and the residual additions in
fewer passes; docs/benchmarks.md).

A replay runs the eager step's kernels on the same tensors, so training matches
the eager run (tests/test_cuda.py compares them). It needs a CUDA GPU, one process
on one GPU, Adam (made capturable by runner.setup.get_optimizer) and no float16
autocast (GradScaler's step reads the host). check_config and `check_graphable`
turn anything else into one line. A batch of another shape (an epoch's smaller
last batch) runs eagerly, on the same weights, gradients and optimizer state (a
compiled model then runs its Python code as is rather than compiling for that shape
once more); so does every batch if the capture fails (a warning says why).
"""
import contextlib
import logging
import warnings

import torch
from torch.profiler import record_function

from hsrnet.utils.errors import ConfigError

logger = logging.getLogger(__name__)

WARMUP_STEPS = 3   # before the capture, on a side stream: cuDNN's tuning, Adam's state


def check_graphable(model):
    """ConfigError unless `model` trains in one process on one CUDA GPU."""
    if isinstance(model, (torch.nn.DataParallel, torch.nn.parallel.DistributedDataParallel)):
        raise ConfigError('SPEED.CUDA_GRAPHS needs one process on one GPU (no GPUS list, '
                          'no torchrun); add SPEED.CUDA_GRAPHS false to train on several')
    device = next(model.parameters()).device
    if device.type != 'cuda':
        raise ConfigError('SPEED.CUDA_GRAPHS needs a CUDA GPU; this run is on {} (add '
                          'SPEED.CUDA_GRAPHS false)'.format(device.type))


def _step_uncaptured(optimizer):
    """optimizer.step() outside the capture (the warm-up, a batch of another shape),
    without capturable Adam's warning that this is slower: here it is meant."""
    with warnings.catch_warnings():
        warnings.filterwarnings('ignore', message='This instance was constructed with '
                                'capturable=True')
        optimizer.step()


def _uncompiled():
    """Compiled code runs eagerly inside (torch >= 2.6): a batch of another shape
    would otherwise compile the model once more, for one step an epoch."""
    set_stance = getattr(torch.compiler, 'set_stance', None)
    return set_stance('force_eager') if set_stance is not None else contextlib.nullcontext()


def _layout(*tensors):
    return tuple((t.shape, t.stride(), t.dtype) for t in tensors)


class GraphedTrainingStep:
    """step(input, target, target_weight) -> (output, loss), as
    core.function.training_step. The tensors returned by a replay are the graph's:
    read them before the next step (the training loop does)."""

    def __init__(self, model, criterion, optimizer, precision):
        check_graphable(model)
        self.model, self.criterion = model, criterion
        self.optimizer, self.precision = optimizer, precision
        self.graph = self.layout = None
        self.static = self.output = self.loss = None

    def __call__(self, input, target, target_weight):
        if self.layout is None:   # the first batch
            self._capture(input, target, target_weight)
        if self.graph is None or _layout(input, target, target_weight) != self.layout:
            return self._eager_step(input, target, target_weight,
                                    other_shape=self.graph is not None)
        for static, value in zip(self.static, (input, target, target_weight)):
            static.copy_(value)
        self.graph.replay()
        return self.output, self.loss

    def uncaptured(self, input, target, target_weight):
        """The step the graph holds, run without it (its kernels, each launched from
        the host: what a profiler can attribute to ops)."""
        return self._eager_step(input, target, target_weight, other_shape=False)

    def _eager_step(self, input, target, target_weight, other_shape):
        # a compiled model is compiled for the captured shape: others run its code as is
        as_is = _uncompiled() if other_shape else contextlib.nullcontext()
        with self.precision.autocast(), as_is:
            output = self.model(input)
        with record_function('loss'):
            loss = self.criterion(output, target, target_weight)
        # zeroed, not set to None: the gradients are the graph's buffers
        self.optimizer.zero_grad(set_to_none=False)
        loss.backward()
        _step_uncaptured(self.optimizer)
        return output, loss

    def _graphed(self):
        """The step the graph holds. Its gradients start as None, so a replay writes
        them rather than adding to them."""
        with self.precision.autocast(cache=False):
            output = self.model(self.static[0])
        loss = self.criterion(output, *self.static[1:])
        loss.backward()
        self.optimizer.step()
        # kept without their autograd graph, whose AccumulateGrad nodes (made on the
        # capture's stream) the eager steps of other shapes would otherwise reuse
        self.output, self.loss = output.detach(), loss.detach()

    def _tensors(self):
        """What a step changes: weights, buffers (BatchNorm's statistics), the
        optimizer's state."""
        state = [value for values in self.optimizer.state.values() for value in values.values()
                 if torch.is_tensor(value)]
        return list(self.model.parameters()) + list(self.model.buffers()) + state

    def _capture(self, input, target, target_weight):
        device = input.device
        self.static = [t.clone() for t in (input, target, target_weight)]   # strides kept
        self.layout = _layout(input, target, target_weight)
        # a tensor, which the lr schedule fills in place; a number would be captured as is
        for group in self.optimizer.param_groups:
            group['lr'] = torch.tensor(float(group['lr']), device=device)
        saved = {id(t): (t, t.detach().clone()) for t in self._tensors()}
        side = torch.cuda.Stream(device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side):
            for _ in range(WARMUP_STEPS):
                self.optimizer.zero_grad(set_to_none=True)
                with self.precision.autocast():
                    output = self.model(self.static[0])
                self.criterion(output, *self.static[1:]).backward()
                _step_uncaptured(self.optimizer)
        # the last warm-up's autograd graph holds each weight's AccumulateGrad node, made
        # on the side stream; kept alive, the capture would reuse them (torch warns)
        del output
        torch.cuda.current_stream(device).wait_stream(side)
        self.optimizer.zero_grad(set_to_none=True)   # the capture allocates the gradients
        try:
            graph = torch.cuda.CUDAGraph()
            # thread_local: the loader's pin-memory thread may allocate pinned memory
            # meanwhile, which the default ('global') mode counts as an error
            with torch.cuda.graph(graph, capture_error_mode='thread_local'):
                self._graphed()
            self.graph = graph
            logger.info('SPEED.CUDA_GRAPHS: training step captured for batches of %s (other '
                        'shapes run eagerly)', 'x'.join(map(str, input.shape)))
        except RuntimeError as error:   # an op that cannot be captured: slower, not stopped
            self.optimizer.zero_grad(set_to_none=True)
            logger.warning('SPEED.CUDA_GRAPHS: the training step could not be captured, it '
                           'runs eagerly: %s', str(error).splitlines()[0] if str(error) else
                           type(error).__name__)
        # undo the warm-up: training starts from where it stood; optimizer state the
        # warm-up created is a fresh Adam's (step 0, moments 0)
        with torch.no_grad():
            for tensor in self._tensors():
                if id(tensor) in saved:
                    tensor.copy_(saved[id(tensor)][1])
                else:
                    tensor.zero_()
