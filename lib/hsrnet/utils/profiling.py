"""Where a training step's time goes, by kind of work: a per-category account of a
torch.profiler run, the FLOPs of a training step, and the share of a GPU's peak.

Knows nothing of configs or datasets: it reads profiler events and module shapes.

Each profiled kernel (on the CPU: each op's own CPU time) is put in one category,
looked up in this order:
1. a region the caller named with `torch.profiler.record_function` (`REGIONS`), in
   the op's chain of parents; backward ops inherit the region of the forward op
   they differentiate (the profiler's sequence numbers link them);
2. the innermost op of the chain that a rule knows (a copy inside a convolution is
   a format conversion, not a convolution); a convolution, forward or backward, is
   transposed when its `transposed` argument says so (recorded by the profiler
   with record_shapes);
3. the kernel's own name (kernels of a replayed CUDA graph, or fused by
   torch.compile, have no op above them that says more);
4. 'other'.
"""
import copy
import re

import torch

CONV_FORWARD = 'convolutions forward'
CONV_BACKWARD = 'convolutions backward'
TRANSPOSED = 'transposed convolutions'
BATCHNORM = 'batchnorm'
ELEMENTWISE = 'elementwise and activations'
COPIES = 'format conversions and copies'
LOSS = 'loss, targets and accuracy'
OPTIMIZER = 'optimizer'
OTHER = 'other'
CATEGORIES = (CONV_FORWARD, CONV_BACKWARD, TRANSPOSED, BATCHNORM, ELEMENTWISE, COPIES, LOSS,
              OPTIMIZER, OTHER)

# record_function names the training code gives its regions -> category
REGIONS = {'loss': LOSS, 'targets': LOSS, 'accuracy': LOSS, 'optimizer': OPTIMIZER}

# position of the `transposed` flag among each convolution op's arguments
_TRANSPOSED_ARG = {'aten::convolution': 6, 'aten::_convolution': 6,
                   'aten::convolution_backward': 7}

# op-name rules, tried on the innermost op first: (pattern, category)
_OP_RULES = (
    (re.compile(r'conv_transpose'), TRANSPOSED),
    (re.compile(r'batch_norm|BatchNorm'), BATCHNORM),
    (re.compile(r'^Optimizer\.|_fused_adam|_foreach_|AccumulateGrad'), OPTIMIZER),
    (re.compile(r'^aten::(copy_|_to_copy|to|contiguous|clone|_copy_from)$|'
                r'^Memcpy|^Memset'), COPIES),
    (re.compile(r'^aten::(relu|relu_|threshold_backward|add|add_|mul|mul_|sub|div|'
                r'fill_|zero_|zeros_like|where|threshold|clamp_min|sum|mean)$'),
     ELEMENTWISE),
)

# kernel-name rules, for kernels no op rule placed
_KERNEL_RULES = (
    (re.compile(r'batch_norm|bn_fw|bn_bw|bn_.*kernel', re.I), BATCHNORM),
    (re.compile(r'adam|multi_tensor_apply', re.I), OPTIMIZER),
    (re.compile(r'nchwToNhwc|nhwcToNchw|Memcpy|Memset|copy|transpose_', re.I), COPIES),
    (re.compile(r'dgrad|wgrad', re.I), CONV_BACKWARD),
    (re.compile(r'fprop|conv|implicit_gemm|xmma|cutlass', re.I), CONV_FORWARD),
    (re.compile(r'elementwise|triton_poi|relu|threshold|fill|reduce', re.I), ELEMENTWISE),
)


def _chain(event):
    """The event and its parents, innermost first."""
    while event is not None:
        yield event
        event = event.cpu_parent


def _is_transposed(event):
    position = _TRANSPOSED_ARG.get(event.name)
    inputs = getattr(event, 'concrete_inputs', None) or []
    return position is not None and len(inputs) > position and inputs[position] is True


def _forward_regions(events):
    """(thread, sequence number) -> category, of the forward ops inside a named
    region (their backward ops go to the same category). Sequence numbers count per
    thread, and on a GPU the backward runs on a thread of its own: a backward node
    names its forward's thread (`fwd_thread`)."""
    regions = {}
    for event in events:
        if event.sequence_nr < 0 or event.name.startswith('autograd::') or \
                _backward_node(event) is not None:
            continue
        for parent in _chain(event):
            if parent.name in REGIONS:
                regions[(event.thread, event.sequence_nr)] = REGIONS[parent.name]
                break
    return regions


def _calls_transposed(event, depth=3):
    """Whether a transposed convolution op is among the event's descendants."""
    return any(_is_transposed(child) or (depth > 1 and _calls_transposed(child, depth - 1))
               for child in event.cpu_children)


def _backward_node(event):
    for parent in _chain(event):
        if parent.name.startswith('autograd::engine::evaluate_function'):
            return parent
    return None


def op_category(event, regions):
    """The category of the time `event` (a profiler op) spends itself, or None when
    no op rule knows it (its kernels' names then decide)."""
    chain = list(_chain(event))
    for parent in chain:
        if parent.name in REGIONS:
            return REGIONS[parent.name]
    node = _backward_node(event)
    if node is not None and (node.fwd_thread, node.sequence_nr) in regions:
        return regions[(node.fwd_thread, node.sequence_nr)]
    for parent in chain:
        if parent.name in _TRANSPOSED_ARG:
            if _is_transposed(parent):
                return TRANSPOSED
            backward = 'backward' in parent.name or node is not None
            return CONV_BACKWARD if backward else CONV_FORWARD
        if 'ConvolutionBackward' in parent.name:   # the autograd node's own time
            return TRANSPOSED if _calls_transposed(parent) else CONV_BACKWARD
        for pattern, category in _OP_RULES:
            if pattern.search(parent.name):
                return category
    return None


def kernel_category(name):
    """The category of a kernel from its name alone."""
    for pattern, category in _KERNEL_RULES:
        if pattern.search(name):
            return category
    return OTHER


def account(events, device_kernels=True):
    """{category: microseconds} of profiler `events` (`prof.events()`): with
    `device_kernels`, the device time of the kernels each op launched; otherwise
    each op's own CPU time (a CPU run)."""
    events = list(events)
    regions = _forward_regions(events)
    totals = dict.fromkeys(CATEGORIES, 0.0)
    for event in events:
        if getattr(event, 'device_type', None) is not None and \
                event.device_type != torch.autograd.DeviceType.CPU:
            continue   # device events: counted through the op that launched them
        if getattr(event, 'is_user_annotation', False) or event.name in REGIONS:
            continue   # a region's own span, not work
        category = op_category(event, regions)
        if device_kernels:
            for kernel in event.kernels:
                totals[category or kernel_category(kernel.name)] += kernel.duration
        else:
            totals[category or kernel_category(event.name)] += event.self_cpu_time_total
    return totals


def graph_kernel_account(events):
    """{category: microseconds} of device kernels that no op launched (a replayed
    CUDA graph's), by kernel name."""
    totals = dict.fromkeys(CATEGORIES, 0.0)
    for event in events:
        if getattr(event, 'device_type', None) == torch.autograd.DeviceType.CUDA \
                and event.cpu_parent is None:
            totals[kernel_category(event.name)] += event.time_range.elapsed_us()
    return totals


def training_flops(model, input_shape, loss=None):
    """FLOPs of one training step's forward and backward for an input of
    `input_shape` (N, C, H, W), counted by torch.utils.flop_counter on a copy of
    `model` on the meta device (nothing computed, `model` untouched). The
    optimizer's and the loss's few FLOPs are not counted."""
    from torch.utils.flop_counter import FlopCounterMode
    meta = copy.deepcopy(getattr(model, '_orig_mod', model)).to('meta').train()
    counter = FlopCounterMode(display=False)
    with counter:
        output = meta(torch.empty(input_shape, device='meta'))
        (output.sum() if loss is None else loss(output)).backward()
    return counter.get_total_flops()


# dense tensor-core peaks in TFLOP/s by the vendors' datasheets (no sparsity):
# (name pattern, bf16/fp16, tf32). The first pattern that matches the device name wins.
PEAK_TFLOPS = (
    ('H100 PCIe', 756.0, 378.0),
    ('H100 NVL', 835.0, 418.0),
    ('H100', 989.4, 494.7),
    ('H200', 989.4, 494.7),
    ('A100', 312.0, 156.0),
    ('L40S', 362.1, 183.0),
)


def peak_tflops(device_name, low_precision):
    """The device's dense peak for bf16/fp16 (`low_precision`) or TF32 matrix work,
    or None for a device not in PEAK_TFLOPS."""
    for pattern, half, tf32 in PEAK_TFLOPS:
        if pattern in device_name:
            return half if low_precision else tf32
    return None


def format_account(totals, steps, wall_ms=None, flops=None, peak=None):
    """Lines of a per-step table: category, ms per step, share of the total; then
    the achieved TFLOP/s (and % of `peak`) when `flops` per step and `wall_ms` are
    given."""
    total = sum(totals.values())
    lines = ['  {:32s} {:>9s} {:>6s}'.format('category', 'ms/step', 'share')]
    for category in CATEGORIES:
        value = totals.get(category, 0.0)
        if value:
            lines.append('  {:32s} {:9.3f} {:5.1f}%'.format(
                category, value / 1000 / steps, 100 * value / total if total else 0.0))
    lines.append('  {:32s} {:9.3f}'.format('sum', total / 1000 / steps))
    if flops and wall_ms:
        achieved = flops / (wall_ms / 1000) / 1e12
        lines.append('  {:.1f} GFLOP a step: {:.1f} TFLOP/s{}'.format(
            flops / 1e9, achieved, '' if peak is None else
            ', {:.1f}% of the device\'s dense peak ({:.0f} TFLOP/s)'.format(
                100 * achieved / peak, peak)))
    return lines
