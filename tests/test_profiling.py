"""utils.profiling: the per-category account of a training step (on a CPU profile
here; the GPU's is printed by tools/benchmark.py train --profile), kernel names,
FLOPs and peaks."""
import pytest
import torch
from torch import nn
from torch.profiler import ProfilerActivity, profile, record_function

from hsrnet.utils import profiling


def profiled_steps(model, input, steps=2):
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

    def step():
        output = model(input)
        with record_function('loss'):
            loss = ((output - 0.5) ** 2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    step()   # Adam's state, first-call costs
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        for _ in range(steps):
            step()
    return profiling.account(prof.events(), device_kernels=False)


def test_account_puts_each_kind_of_work_in_its_category():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
                          nn.ConvTranspose2d(16, 8, 4, stride=2, padding=1))
    totals = profiled_steps(model, torch.randn(4, 3, 32, 32))
    assert set(totals) == set(profiling.CATEGORIES)
    for category in (profiling.CONV_FORWARD, profiling.CONV_BACKWARD, profiling.TRANSPOSED,
                     profiling.BATCHNORM, profiling.ELEMENTWISE, profiling.LOSS,
                     profiling.OPTIMIZER):
        assert totals[category] > 0, category


def test_a_transposed_convolution_and_its_backward_are_not_plain_convolutions():
    torch.manual_seed(0)
    model = nn.Sequential(nn.ConvTranspose2d(8, 8, 4, stride=2, padding=1))
    totals = profiled_steps(model, torch.randn(2, 8, 16, 16))
    assert totals[profiling.TRANSPOSED] > 0
    assert totals[profiling.CONV_FORWARD] == totals[profiling.CONV_BACKWARD] == 0


def test_the_loss_backward_belongs_to_the_loss():
    """The loss's backward ops run outside its region; the profiler's sequence
    numbers take them back to it."""
    model = nn.Sequential(nn.Conv2d(2, 2, 1))
    big = torch.randn(1, 2, 256, 256)   # a costly loss against a tiny network
    totals = profiled_steps(model, big)
    assert totals[profiling.LOSS] > totals[profiling.ELEMENTWISE]


@pytest.mark.parametrize('name, category', [
    ('sm90_xmma_fprop_implicit_gemm_bf16bf16_bf16f32_f32_nhwckrsc_nhwc', profiling.CONV_FORWARD),
    ('sm90_xmma_dgrad_implicit_gemm_bf16bf16_bf16f32_f32_nhwckrsc_nhwc', profiling.CONV_BACKWARD),
    ('sm90_xmma_wgrad_indexed_implicit_gemm_bf16bf16_bf16f32', profiling.CONV_BACKWARD),
    ('void at::native::batch_norm_collect_statistics_channels_last_kernel<...>',
     profiling.BATCHNORM),
    ('triton_red_fused__native_batch_norm_legit_functional_relu_12', profiling.BATCHNORM),
    ('void at::native::(anonymous namespace)::multi_tensor_apply_kernel<FusedAdamMathFunctor>',
     profiling.OPTIMIZER),
    ('void cudnn::ops::nchwToNhwcKernel<__nv_bfloat16>', profiling.COPIES),
    ('triton_poi_fused_add_relu_threshold_backward_7', profiling.ELEMENTWISE),
    ('some_kernel_nobody_named', profiling.OTHER),
])
def test_kernel_names(name, category):
    assert profiling.kernel_category(name) == category


def test_peaks_of_known_devices_only():
    assert profiling.peak_tflops('NVIDIA H100 80GB HBM3', True) == pytest.approx(989.4)
    assert profiling.peak_tflops('NVIDIA H100 PCIe', True) == pytest.approx(756.0)
    assert profiling.peak_tflops('NVIDIA H200', False) == pytest.approx(494.7)
    assert profiling.peak_tflops('NVIDIA A100-SXM4-80GB', True) == pytest.approx(312.0)
    assert profiling.peak_tflops('NVIDIA GeForce RTX 4090', True) is None


def test_training_flops_of_a_convolution():
    """Forward 2*N*Cout*H*W*Cin*k*k; backward the weight's gradient (the input needs
    none) and, for the second layer, the first layer's output's."""
    model = nn.Sequential(nn.Conv2d(4, 8, 3, padding=1, bias=False),
                          nn.Conv2d(8, 8, 1, bias=False))
    first = 2 * 2 * 8 * 8 * 8 * 4 * 9
    second = 2 * 2 * 8 * 8 * 8 * 8
    flops = profiling.training_flops(model, (2, 4, 8, 8))
    assert flops == first * 2 + second * 3
    assert next(model.parameters()).device.type == 'cpu'   # the model itself untouched


def test_format_account_shares():
    lines = profiling.format_account({profiling.CONV_FORWARD: 3000.0, profiling.OTHER: 1000.0},
                                     1, wall_ms=4.0, flops=4e9, peak=10.0)
    assert any('75.0%' in line for line in lines) and any('25.0%' in line for line in lines)
    assert '1.0 TFLOP/s, 10.0% of' in lines[-1]
