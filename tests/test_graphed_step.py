"""engine.cuda_graph.GraphedTrainingStep's own logic on the CPU, with CUDA's graph
and stream calls stood in for: a "replay" runs the captured step again, gradients
set to None first (as a real replay writes them). What this checks: the warm-up
before the capture leaves no trace (weights, BatchNorm statistics and counts,
Adam's state as a fresh one's), the lr schedule reaches the captured step, and a
batch of another shape runs eagerly on the same state. The real capture runs in
tests/test_cuda.py."""
import contextlib
import functools

import pytest
import torch
from torch import nn

from hsrnet.engine import cuda_graph
from hsrnet.engine.loops import training_step
from hsrnet.head.loss import JointsMSELoss


class FakeGraph:
    step = None   # the GraphedTrainingStep whose capture this stands for

    def replay(self):
        FakeGraph.step.optimizer.zero_grad(set_to_none=True)
        FakeGraph.step._graphed()


class FakeStream:
    def wait_stream(self, other):
        pass


@pytest.fixture
def fake_cuda(monkeypatch):
    monkeypatch.setattr(cuda_graph, 'check_graphable', lambda model: None)
    monkeypatch.setattr(torch.cuda, 'CUDAGraph', FakeGraph)
    monkeypatch.setattr(torch.cuda, 'Stream', lambda device=None: FakeStream())
    monkeypatch.setattr(torch.cuda, 'current_stream', lambda device=None: FakeStream())
    monkeypatch.setattr(torch.cuda, 'stream', lambda stream: contextlib.nullcontext())
    monkeypatch.setattr(torch.cuda, 'graph', lambda graph, **options: contextlib.nullcontext())


def float32():
    from hsrnet.config import get_default_config
    from hsrnet.engine.precision import Precision
    return Precision(get_default_config(), torch.device('cpu'))


def tiny_net(seed):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.Conv2d(8, 4, 1))


def batches(seed, sizes):
    generator = torch.Generator().manual_seed(seed)
    return [(torch.randn(n, 3, 8, 6, generator=generator),
             torch.rand(n, 4, 8, 6, generator=generator),
             torch.rand(n, 4, 1, generator=generator)) for n in sizes]


def capturable_adam(model):
    # fused: on the CPU, capturable Adam runs only fused (it is CUDA's way anyway)
    return torch.optim.Adam(model.parameters(), lr=1e-2, capturable=True, fused=True)


def train(step_of, sizes):
    """Two 'epochs' over batches of `sizes`, the lr dropping after the first."""
    model = tiny_net(0)
    optimizer = capturable_adam(model)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, [1], 0.1)
    step = step_of(model, JointsMSELoss(True), optimizer, float32())
    FakeGraph.step = step
    losses = []
    model.train()
    for epoch in range(2):
        for batch in batches(epoch, sizes):
            losses.append(float(step(*batch)[1].detach()))
        scheduler.step()
    return model, optimizer, losses


def test_graphed_step_trains_as_the_eager_one(fake_cuda):
    sizes = (5, 5, 3)   # each epoch's last batch is smaller: eager
    eager = train(lambda *a: functools.partial(training_step, *a), sizes)
    graphed = train(cuda_graph.GraphedTrainingStep, sizes)
    assert graphed[2] == pytest.approx(eager[2], rel=1e-6, abs=1e-9)
    for (name, a), b in zip(eager[0].state_dict().items(), graphed[0].state_dict().values()):
        torch.testing.assert_close(b, a, rtol=1e-6, atol=1e-8, msg=name)
    assert int(graphed[0][1].num_batches_tracked) == 2 * len(sizes)   # no warm-up steps
    state_a = [s['step'] for s in eager[1].state.values()]
    state_b = [s['step'] for s in graphed[1].state.values()]
    assert [float(s) for s in state_b] == [float(s) for s in state_a] == [6.0] * 6
    # the schedule filled the captured step's lr tensor in place
    lr = graphed[1].param_groups[0]['lr']
    assert torch.is_tensor(lr) and float(lr) == pytest.approx(1e-3)


def test_graphed_step_restores_a_resumed_state(fake_cuda):
    """Adam's state loaded from a checkpoint is what the first real step starts from."""
    model = tiny_net(0)
    optimizer = capturable_adam(model)
    criterion, precision = JointsMSELoss(True), float32()
    first, second = batches(0, (4, 4))
    training_step(model, criterion, optimizer, precision, *first)   # some history
    before = {(i, k): v.clone() for i, s in enumerate(optimizer.state.values())
              for k, v in s.items()}
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    step = cuda_graph.GraphedTrainingStep(model, criterion, optimizer, precision)
    FakeGraph.step = step
    step._capture(*second)   # the warm-up and the capture, no replay yet
    after = {(i, k): v for i, s in enumerate(optimizer.state.values()) for k, v in s.items()}
    assert len(before) == 3 * 6 and after.keys() == before.keys()   # step, 2 moments; 6 tensors
    assert all(torch.equal(after[k], before[k]) for k in before)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in weights.items())


def test_a_failed_capture_trains_eagerly_and_says_why(fake_cuda, monkeypatch, caplog):
    @contextlib.contextmanager
    def failing(graph, **options):
        raise RuntimeError('operation not permitted when stream is capturing\nmore')
        yield

    monkeypatch.setattr(torch.cuda, 'graph', failing)
    sizes = (5, 5, 3)
    eager = train(lambda *a: functools.partial(training_step, *a), sizes)
    with caplog.at_level('WARNING', logger='hsrnet.engine.cuda_graph'):
        graphed = train(cuda_graph.GraphedTrainingStep, sizes)
    assert graphed[2] == pytest.approx(eager[2], rel=1e-6, abs=1e-9)
    for (name, a), b in zip(eager[0].state_dict().items(), graphed[0].state_dict().values()):
        torch.testing.assert_close(b, a, rtol=1e-6, atol=1e-8, msg=name)
    warnings = [r.getMessage() for r in caplog.records if r.levelname == 'WARNING']
    assert warnings == ['SPEED.CUDA_GRAPHS: the training step could not be captured, it runs '
                        'eagerly: operation not permitted when stream is capturing']


def test_a_compiled_model_is_compiled_for_the_captured_shape_only(fake_cuda):
    """SPEED.COMPILE with SPEED.CUDA_GRAPHS: the warm-up compiles the model for the
    captured shape; an epoch's smaller last batch runs the model's code as is
    instead of compiling it once more, and trains as the eager step."""
    compiled = []

    def counting_backend(graph_module, example_inputs):
        compiled.append([tuple(x.shape) for x in example_inputs if torch.is_tensor(x)])
        return graph_module.forward

    class Net(nn.Module):   # a forward of our own: torch's modules are not traced
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            return self.inner(x)

    def graphed_compiled(model, *rest):
        model = Net(model)
        model.compile(backend=counting_backend)
        return cuda_graph.GraphedTrainingStep(model, *rest)

    torch._dynamo.reset()
    sizes = (5, 5, 3)
    eager = train(lambda *a: functools.partial(training_step, *a), sizes)
    graphed = train(graphed_compiled, sizes)
    torch._dynamo.reset()
    assert len(compiled) == 1 and (5, 3, 8, 6) in compiled[0]
    assert graphed[2] == pytest.approx(eager[2], rel=1e-5, abs=1e-8)


def test_the_uncaptured_step_is_the_captured_one_run_eagerly(fake_cuda):
    """GraphedTrainingStep.uncaptured (what the benchmark profiles) trains as a replay."""
    sizes = (5, 5, 5)
    replayed = train(cuda_graph.GraphedTrainingStep, sizes)

    class Uncaptured(cuda_graph.GraphedTrainingStep):
        def __call__(self, *batch):
            if self.layout is None:
                self._capture(*batch)
            return self.uncaptured(*batch)

    uncaptured = train(Uncaptured, sizes)
    assert uncaptured[2] == pytest.approx(replayed[2], rel=1e-6, abs=1e-9)
