"""One training epoch and one validation pass (also under torchrun).

`train_one_epoch` and `validate_model` are what the scripts call; `train` and
`validate` keep the original's signatures (tb_log_dir, writer_dict) as thin
wrappers for users' scripts.
"""
import functools
import logging
import math
import os
import time

import numpy as np
import torch
from torch.profiler import record_function

from hsrnet.head.codec import HeatmapCodec, argmax_coords
from hsrnet.config import get_model_name
from hsrnet.head.accuracy import accuracy, accuracy_on_device
from hsrnet.engine.heatmap_cache import HeatmapParts
from hsrnet.head.inference import decode_keypoints, predict_heatmaps
from hsrnet.evaluation import PosePredictions
from hsrnet.utils.distributed import (all_gather_objects, all_reduce_sum, broadcast_object,
                               dataset_order, get_rank, merge_in_dataset_order)
from hsrnet.utils.errors import NonFiniteLossError  # noqa: F401  (re-exported: core.function)
from hsrnet.utils.fileio import write_json_atomically
from hsrnet.utils.meters import AverageMeter, progress_line
from hsrnet.utils.modules import unwrap_model
from hsrnet.utils.preemption import ValidationStopped
from hsrnet.engine.precision import Precision
from hsrnet.utils.vis import save_debug_images

logger = logging.getLogger(__name__)


def _device_of(model):
    return next(unwrap_model(model).parameters()).device


class TrainingWindow:
    """Loss and accuracy of the iterations since the last report, summed on the
    device (no host sync per iteration), and the first non-finite loss met."""

    def __init__(self, device):
        self.device = device
        self.start = 0
        self._reset()

    def _reset(self):
        zero = torch.zeros((), dtype=torch.float64, device=self.device)
        self.loss_sum, self.count = zero.clone(), zero.clone()
        self.acc_sum, self.acc_count = zero.clone(), zero.clone()
        self.bad_iteration = torch.full((), -1, dtype=torch.int64, device=self.device)
        self.bad_value = zero.clone()

    def add(self, iteration, loss, n, avg_acc, cnt):
        loss = loss.detach().double()
        self.loss_sum += loss * n
        self.count += n
        self.acc_sum += avg_acc.double() * cnt
        self.acc_count += cnt
        first = (self.bad_iteration < 0) & ~torch.isfinite(loss)
        self.bad_iteration = torch.where(first, iteration, self.bad_iteration)
        self.bad_value = torch.where(first, loss, self.bad_value)

    def read(self, epoch, iteration):
        """One host sync: (loss sum, count, accuracy sum, accuracy count) of the window;
        raises NonFiniteLossError when a loss of the window (on any rank under
        torchrun, so that no rank is left waiting in a collective) was NaN or inf."""
        values = torch.stack([self.loss_sum, self.count, self.acc_sum, self.acc_count,
                              (self.bad_iteration >= 0).double()])
        values = all_reduce_sum(values.tolist(), self.device).tolist()
        bad_iteration, bad_value = int(self.bad_iteration), float(self.bad_value)
        window = (self.start, iteration)
        self.start = iteration + 1
        self._reset()
        if values[4] > 0:
            if bad_iteration >= 0:
                where = 'iteration {}'.format(bad_iteration)
                value = bad_value
            else:
                where, value = 'another rank', float('nan')
            checked = '' if window[0] == window[1] else \
                ' (iterations {}-{}, checked every PRINT_FREQ)'.format(*window)
            raise NonFiniteLossError('loss is {} at epoch {}, {}{}'.format(
                value, epoch, where, checked))
        return values[:4]


def training_step(model, criterion, optimizer, precision, input, target, target_weight):
    """One optimizer step on a batch already on the device (forward under the
    precision's autocast, loss in float32, scaled backward). Returns (output, loss)
    as tensors: nothing is read back to the host."""
    with precision.autocast():
        output = model(input)
    with record_function('loss'):   # regions named for utils.profiling's account
        loss = criterion(output, target, target_weight)
    optimizer.zero_grad(set_to_none=True)
    precision.scaler.scale(loss).backward()
    precision.scaler.step(optimizer)
    precision.scaler.update()
    return output, loss


def make_training_step(cfg, model, criterion, optimizer, precision):
    """The scripts' step(input, target, target_weight) -> (output, loss): training_step,
    or with SPEED.CUDA_GRAPHS its capture in a CUDA graph (ConfigError where that
    cannot run)."""
    if cfg.SPEED.CUDA_GRAPHS:
        from hsrnet.engine.cuda_graph import GraphedTrainingStep
        return GraphedTrainingStep(model, criterion, optimizer, precision)
    return functools.partial(training_step, model, criterion, optimizer, precision)


def _is_report_step(step, total, freq):
    return step % max(freq, 1) == 0 or step == total - 1


def train_one_epoch(config, train_loader, model, criterion, optimizer, epoch, output_dir,
                    writer=None, precision=None, start_batch=0, after_step=None, step=None):
    """Train `model` for one epoch; rank 0 reports progress every PRINT_FREQ
    iterations (log, the TensorBoard `writer` when given, DEBUG pictures). Loss
    and accuracy stay on the device between reports (read then: no host sync per
    iteration). Returns the epoch's average loss and accuracy; raises
    NonFiniteLossError on a NaN/inf loss, at the report that ends its window,
    which always comes before the end of the epoch (so before any checkpoint).

    `start_batch`: the epoch's batches before it were trained on already (the
    loader skips them; a resumed run). `after_step(done)` is called after each
    step with the number of the epoch's batches done; when it returns True the
    epoch stops there (a stop request; the window is read first). Samples of
    images skipped under DATASET.SKIP_BAD_IMAGES are counted in the epoch's summary.
    `step`: the training step (default: make_training_step's for `config`)."""
    device = _device_of(model)
    precision = precision or Precision(config, device)
    step = step or make_training_step(config, model, criterion, optimizer, precision)
    batch_time, data_time, losses, acc = (AverageMeter() for _ in range(4))
    window = TrainingWindow(device)
    total = start_batch + len(train_loader)
    skipped = 0
    model.train()
    end = time.time()
    for i, batch in enumerate(train_loader, start_batch):
        if batch is None:   # every image of the batch was skipped (SKIP_BAD_IMAGES)
            skipped += train_loader.batch_size
            if after_step is not None and after_step(i + 1):
                break
            continue
        input, target, target_weight, meta = batch
        skipped += int(meta.get('skipped', 0))
        data_time.update(time.time() - end)
        input = precision.prepare_input(input, device)
        target = target.to(device, non_blocking=True)
        target_weight = target_weight.to(device, non_blocking=True)

        output, loss = step(input, target, target_weight)
        window.add(i, loss, input.size(0), *accuracy_on_device(output, target))
        batch_time.update(time.time() - end)

        stop = after_step is not None and after_step(i + 1)
        if stop or _is_report_step(i, total, config.PRINT_FREQ):
            loss_sum, count, acc_sum, acc_count = window.read(epoch, i)
            losses.update(loss_sum / max(count, 1), count)
            acc.update(acc_sum / max(acc_count, 1) if acc_count else 0.0, acc_count)
            if get_rank() == 0:
                logger.info(progress_line('Epoch [{}]'.format(epoch), i + 1, total, batch_time,
                                          data_time, input.size(0), loss=losses, acc=acc))
                if writer is not None:
                    global_step = epoch * total + i + 1
                    writer.add_scalar('train_loss', losses.val, global_step)
                    writer.add_scalar('train_acc', acc.val, global_step)
                if config.DEBUG.DEBUG:
                    pred, _ = argmax_coords(output.detach().float().cpu().numpy())
                    stride = input.size(3) / output.size(3)
                    save_debug_images(config, input, meta, target, pred * stride, output,
                                      os.path.join(output_dir, 'debug', 'train_{}'.format(i)))
        end = time.time()
        if stop:
            break
    if skipped:
        logger.warning('epoch %d: %d sample(s) of unreadable images skipped on this rank '
                       '(DATASET.SKIP_BAD_IMAGES; see the warnings above)', epoch, skipped)
    return losses.avg, acc.avg


def has_ground_truth_heatmaps(val_dataset):
    """Whether the persons validated are the annotated ones, whose heatmaps give a
    loss and an accuracy; detector boxes have none to compare with."""
    return val_dataset.is_train or getattr(val_dataset, 'use_gt_bbox', True)


def _collect_predictions(config, val_loader, val_dataset, model, criterion, precision,
                         device, output_dir, heatmap_parts=None, should_stop=None):
    """Run this rank's share of the validation set. Returns a dict of its
    results in the order of its sampler (keypoints, centers, scales, box_scores,
    images) plus summed loss/accuracy; the heatmaps go to `heatmap_parts`
    (engine.heatmap_cache.HeatmapParts), when given, batch by batch. When
    `should_stop()` turns true after a batch: ValidationStopped (this rank only)."""
    flip_pairs = val_dataset.flip_pairs if config.TEST.FLIP_TEST else None
    # the dataset's codec: the run's one (a dataset of users' own may have none)
    codec = getattr(val_dataset, 'codec', None) or HeatmapCodec.from_config(config)
    has_targets = has_ground_truth_heatmaps(val_dataset)
    indices = []      # dataset indices predicted (those of skipped images are not)
    skipped = 0
    parts = {'keypoints': [], 'centers': [], 'scales': [], 'box_scores': []}
    image_paths = []
    batch_time, data_time, losses, acc = (AverageMeter() for _ in range(4))
    total = len(val_loader)
    end = time.time()
    with torch.no_grad():
        for i, batch in enumerate(val_loader):
            if batch is None:   # every image of the batch was skipped (SKIP_BAD_IMAGES)
                skipped += val_loader.batch_size
                continue
            input, target, target_weight, meta = batch
            skipped += int(meta.get('skipped', 0))
            indices.extend(int(k) for k in meta['index'])
            data_time.update(time.time() - end)
            input = precision.prepare_input(input, device)
            output = predict_heatmaps(model, input, flip_pairs,
                                      codec.flip_shift(config.TEST.SHIFT_HEATMAP), precision)
            n = input.size(0)
            heatmaps = output.cpu().numpy()
            if has_targets:
                target = target.to(device, non_blocking=True)
                target_weight = target_weight.to(device, non_blocking=True)
                losses.update(criterion(output, target, target_weight).item(), n)
                _, avg_acc, cnt, pred = accuracy(output, target)
                acc.update(avg_acc, cnt)
            else:   # detector boxes: no ground-truth heatmaps to compare with
                pred = argmax_coords(heatmaps)[0]
            center, scale = meta['center'].numpy(), meta['scale'].numpy()
            parts['keypoints'].append(decode_keypoints(codec, heatmaps, center, scale))
            parts['centers'].append(center)
            parts['scales'].append(scale)
            parts['box_scores'].append(meta['score'].numpy())
            if heatmap_parts is not None:
                heatmap_parts.append(heatmaps)
            image_paths.extend(meta['image'])

            batch_time.update(time.time() - end)
            end = time.time()
            if get_rank() == 0 and _is_report_step(i, total, config.PRINT_FREQ):
                meters = {'loss': losses, 'acc': acc} if has_targets else {}
                logger.info(progress_line('Test', i + 1, total, batch_time, data_time, n,
                                          **meters))
                stride = input.size(3) / output.size(3)
                save_debug_images(config, input, meta, target, pred * stride, output,
                                  os.path.join(output_dir, 'debug', 'val_{}'.format(i)))
            if should_stop is not None and should_stop() and i + 1 < total:
                raise ValidationStopped(i + 1, total)
    if skipped:
        logger.warning('validation: %d sample(s) of unreadable images skipped on this rank '
                       '(DATASET.SKIP_BAD_IMAGES; see the warnings above)', skipped)
    if not image_paths:   # every image of this shard was skipped
        joints = config.MODEL.NUM_JOINTS
        empty = {'keypoints': (0, joints, 3), 'centers': (0, 2), 'scales': (0, 2),
                 'box_scores': (0,)}
        parts = {key: [np.zeros(empty[key], np.float32)] for key in parts}
    shard = {key: np.concatenate(values) for key, values in parts.items()}
    shard.update(indices=indices, images=image_paths,
                 stats=[losses.sum, losses.count, acc.sum, acc.count])
    return shard


def validate_model(config, val_loader, val_dataset, model, criterion, output_dir, writer=None,
                   precision=None, epoch=None, heatmaps_file=None, heatmaps_dtype='float16',
                   should_stop=None):
    """Predict every person of `val_dataset`, evaluate on rank 0 with the
    dataset's metric (the metrics also go to <output_dir>/results/metrics_<set>.json,
    and to TensorBoard at step `epoch` when `writer` is given), return the
    performance indicator (AP for COCO) on every rank.

    With `heatmaps_file`, the decoded heatmaps are also saved there with the
    boxes (engine.heatmap_cache), for tools/redecode.py. `should_stop()`, asked
    after each batch, ends the validation there (ValidationStopped; nothing is
    written): train.py's stop on SIGTERM/SIGINT.

    Under torchrun each rank predicts its shard; the shards are gathered and
    put back in dataset order before evaluation.
    """
    # DDP's forward may talk to other ranks; ranks hold different numbers of
    # batches here, so the bare module is used.
    if isinstance(model, torch.nn.parallel.DistributedDataParallel):
        model = model.module
    device = _device_of(model)
    precision = precision or Precision(config, device)
    model.eval()
    # built for this validation: the weights change between epochs
    model = precision.inference_network(model, config.MODEL.IMAGE_SIZE)
    # the heatmaps go to a file per rank as they come, never all into memory
    parts = HeatmapParts(heatmaps_file, get_rank(), heatmaps_dtype) if heatmaps_file else None
    try:
        shard = _collect_predictions(config, val_loader, val_dataset, model, criterion,
                                     precision, device, output_dir, heatmap_parts=parts,
                                     should_stop=should_stop)
    except BaseException:
        if parts is not None:
            parts.discard()
        raise
    if parts is not None:
        shard['heatmap_part'] = parts.close()
    stats = all_reduce_sum(shard.pop('stats'), device).tolist()
    loss_avg = stats[0] / max(stats[1], 1)
    acc_avg = stats[2] / max(stats[3], 1)
    shards = all_gather_objects(shard)
    perf_indicator = None
    if get_rank() == 0:
        heatmap_parts = [shard.pop('heatmap_part', None) for shard in shards]
        allow_missing = val_dataset.skip_bad_images
        merged = merge_in_dataset_order(shards, len(val_dataset), allow_missing=allow_missing)
        try:
            predictions = PosePredictions(**merged)
            predictions.check_finite()   # nothing non-finite is written or scored
            if heatmaps_file:
                width, height = config.MODEL.EXTRA.HEATMAP_SIZE
                HeatmapParts.merge(heatmaps_file, heatmap_parts,
                                   dataset_order(shards, len(val_dataset), allow_missing)[1],
                                   (config.MODEL.NUM_JOINTS, height, width), heatmaps_dtype,
                                   predictions, config)
        finally:
            HeatmapParts.remove(heatmap_parts)
        name_values, perf_indicator = val_dataset.get_metric().evaluate(predictions, output_dir)
        heatmap_stats = (loss_avg, acc_avg) if has_ground_truth_heatmaps(val_dataset) else None
        _report(config, val_dataset.image_set, output_dir, writer, epoch, heatmap_stats,
                {name: float(value) for name, value in name_values.items()}, perf_indicator)
    return broadcast_object(perf_indicator)


def _report(config, image_set, output_dir, writer, epoch, heatmap_stats, name_values, perf):
    """The pass's metrics: results/metrics_<set>.json, one log line, TensorBoard.
    `heatmap_stats` (loss, accuracy) against the ground-truth heatmaps, or None
    where there are none (detector boxes)."""
    name = get_model_name(config)[1]
    loss, accuracy = heatmap_stats or (float('nan'), float('nan'))
    metrics_dir = os.path.join(output_dir, 'results')
    os.makedirs(metrics_dir, exist_ok=True)
    # json has no NaN: an undefined value (an empty set's metric, no heatmaps) is null
    finite = lambda v: v if math.isfinite(v) else None   # noqa: E731
    write_json_atomically(
        {'model': name, 'epoch': epoch, 'loss': finite(loss), 'accuracy': finite(accuracy),
         'metrics': {key: finite(v) for key, v in name_values.items()}},
        os.path.join(metrics_dir, 'metrics_{}.json'.format(image_set)))
    # the metric has printed its table
    logger.info('%s: %s%s %.4f', name, 'loss %.5g, heatmap accuracy %.4f, ' % heatmap_stats
                if heatmap_stats else '', next(iter(name_values), 'perf'), perf)
    if writer is not None:
        step = epoch if epoch is not None else 0
        if heatmap_stats:
            writer.add_scalar('valid_loss', loss, step)
            writer.add_scalar('valid_acc', accuracy, step)
        writer.add_scalars('valid', name_values, step)


def train(config, train_loader, model, criterion, optimizer, epoch, output_dir,
          tb_log_dir=None, writer_dict=None, precision=None):
    """The original's signature of `train_one_epoch`; `tb_log_dir` is not used,
    `writer_dict` = {'writer': SummaryWriter, ...}."""
    writer = writer_dict['writer'] if writer_dict else None
    return train_one_epoch(config, train_loader, model, criterion, optimizer, epoch, output_dir,
                           writer, precision)


def validate(config, val_loader, val_dataset, model, criterion, output_dir, tb_log_dir=None,
             writer_dict=None, precision=None, epoch=None):
    """The original's signature of `validate_model`; `tb_log_dir` is not used.
    With `writer_dict` = {'writer', 'valid_global_steps'} and no `epoch`, the
    scalars go to step valid_global_steps, which is then advanced (as the original)."""
    writer = writer_dict['writer'] if writer_dict else None
    if writer_dict is not None and epoch is None:
        step = writer_dict.get('valid_global_steps', 0)
        writer_dict['valid_global_steps'] = step + 1
        epoch = step
    return validate_model(config, val_loader, val_dataset, model, criterion, output_dir, writer,
                          precision, epoch)
