"""One training epoch and one validation pass (also under torchrun)."""
import logging
import os
import time

import numpy as np
import torch

from core.config import get_model_name
from core.evaluate import accuracy, accuracy_on_device
from core.inference import get_final_preds, get_max_preds
from utils.fileio import write_json_atomically
from utils.distributed import (all_gather_objects, all_reduce_sum, broadcast_object,
                               get_rank, merge_in_dataset_order)
from utils.meters import AverageMeter, progress_line
from utils.precision import Precision
from utils.transforms import flip_back
from utils.utils import unwrap_model
from utils.vis import save_debug_images

logger = logging.getLogger(__name__)


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite."""


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


def _is_report_step(step, total, freq):
    return step % max(freq, 1) == 0 or step == total - 1


def train(config, train_loader, model, criterion, optimizer, epoch, output_dir,
          tb_log_dir, writer_dict, precision=None):
    """Train `model` for one epoch; rank 0 reports progress every PRINT_FREQ
    iterations (log, TensorBoard through `writer_dict` = {'writer',
    'train_global_steps'} when given, DEBUG pictures). Loss and accuracy stay on
    the device between reports (read then: no host sync per iteration). Returns
    the epoch's average loss and accuracy; raises NonFiniteLossError on a NaN/inf
    loss, at the report that ends its window, which always comes before the end
    of the epoch (and so before any checkpoint)."""
    device = _device_of(model)
    precision = precision or Precision(config, device)
    batch_time, data_time, losses, acc = (AverageMeter() for _ in range(4))
    window = TrainingWindow(device)
    total = len(train_loader)
    model.train()
    end = time.time()
    for i, (input, target, target_weight, meta) in enumerate(train_loader):
        data_time.update(time.time() - end)
        input = precision.prepare_input(input, device)
        target = target.to(device, non_blocking=True)
        target_weight = target_weight.to(device, non_blocking=True)

        with precision.autocast():
            output = model(input)
        loss = criterion(output, target, target_weight)

        optimizer.zero_grad(set_to_none=True)
        precision.scaler.scale(loss).backward()
        precision.scaler.step(optimizer)
        precision.scaler.update()

        window.add(i, loss, input.size(0), *accuracy_on_device(output, target))
        batch_time.update(time.time() - end)

        if _is_report_step(i, total, config.PRINT_FREQ):
            loss_sum, count, acc_sum, acc_count = window.read(epoch, i)
            losses.update(loss_sum / max(count, 1), count)
            acc.update(acc_sum / max(acc_count, 1) if acc_count else 0.0, acc_count)
            if get_rank() == 0:
                logger.info(progress_line('Epoch [{}]'.format(epoch), i + 1, total, batch_time,
                                          data_time, input.size(0), loss=losses, acc=acc))
                if writer_dict is not None:
                    step = epoch * total + i + 1
                    writer_dict['train_global_steps'] = step
                    writer_dict['writer'].add_scalar('train_loss', losses.val, step)
                    writer_dict['writer'].add_scalar('train_acc', acc.val, step)
                if config.DEBUG.DEBUG:
                    pred, _ = get_max_preds(output.detach().float().cpu().numpy())
                    stride = input.size(3) / output.size(3)
                    save_debug_images(config, input, meta, target, pred * stride, output,
                                      os.path.join(output_dir, 'debug', 'train_{}'.format(i)))
        end = time.time()
    return losses.avg, acc.avg


def predict_heatmaps(model, images, flip_pairs=None, shift_heatmap=False, precision=None):
    """Heatmaps (float32) of a batch; with `flip_pairs` the flip test: the plain and
    the mirrored crops go through the network one after the other, the mirrored
    heatmaps are flipped back, optionally shifted one pixel right
    (TEST.SHIFT_HEATMAP), and averaged with the plain ones."""
    autocast = precision.autocast() if precision is not None else torch.autocast(
        images.device.type, enabled=False)
    if flip_pairs is None:
        with autocast:
            return model(images).float()
    # Two forward passes rather than one of twice the batch: the peak memory of
    # the activations does not double with the flip test. A batch of one crop
    # still goes as one pair (oneDNN computes a single image along another path,
    # last-bit different, and results must not depend on how the set is sharded).
    with autocast:
        if images.size(0) == 1:
            plain, mirrored = model(torch.cat([images, images.flip(3)])).float().chunk(2)
        else:
            plain = model(images).float()
            mirrored = model(images.flip(3)).float()
    mirrored = flip_back(mirrored, flip_pairs)
    if shift_heatmap:
        mirrored[..., 1:] = mirrored[..., :-1].clone()
    return (plain + mirrored) * 0.5


def _collect_predictions(config, val_loader, val_dataset, model, criterion, precision,
                         device, output_dir):
    """Run this rank's share of the validation set. Returns a dict of its results
    in the order of its sampler plus summed loss/accuracy statistics."""
    flip_pairs = val_dataset.flip_pairs if config.TEST.FLIP_TEST else None
    indices = list(iter(val_loader.sampler))
    num = len(indices)
    num_joints = config.MODEL.NUM_JOINTS
    preds = np.zeros((num, num_joints, 3), dtype=np.float32)
    boxes = np.zeros((num, 6), dtype=np.float32)
    image_paths = []
    batch_time, data_time, losses, acc = (AverageMeter() for _ in range(4))
    total = len(val_loader)
    filled = 0
    end = time.time()
    with torch.no_grad():
        for i, (input, target, target_weight, meta) in enumerate(val_loader):
            data_time.update(time.time() - end)
            input = precision.prepare_input(input, device)
            output = predict_heatmaps(model, input, flip_pairs, config.TEST.SHIFT_HEATMAP,
                                      precision)
            target = target.to(device, non_blocking=True)
            target_weight = target_weight.to(device, non_blocking=True)
            loss = criterion(output, target, target_weight)

            n = input.size(0)
            losses.update(loss.item(), n)
            _, avg_acc, cnt, pred = accuracy(output, target)
            acc.update(avg_acc, cnt)

            center = meta['center'].numpy()
            scale = meta['scale'].numpy()
            coords, maxvals = get_final_preds(config, output.cpu().numpy(), center, scale)
            rows = slice(filled, filled + n)
            preds[rows, :, :2] = coords[..., :2]
            preds[rows, :, 2:3] = maxvals
            boxes[rows, 0:2] = center[:, :2]
            boxes[rows, 2:4] = scale[:, :2]
            boxes[rows, 4] = np.prod(scale * 200, axis=1)
            boxes[rows, 5] = meta['score'].numpy()
            image_paths.extend(meta['image'])
            filled += n

            batch_time.update(time.time() - end)
            end = time.time()
            if get_rank() == 0 and _is_report_step(i, total, config.PRINT_FREQ):
                logger.info(progress_line('Test', i + 1, total, batch_time, data_time, n,
                                          loss=losses, acc=acc))
                stride = input.size(3) / output.size(3)
                save_debug_images(config, input, meta, target, pred * stride, output,
                                  os.path.join(output_dir, 'debug', 'val_{}'.format(i)))
    return {'indices': indices, 'preds': preds, 'boxes': boxes, 'image': image_paths,
            'stats': [losses.sum, losses.count, acc.sum, acc.count]}


def validate(config, val_loader, val_dataset, model, criterion, output_dir, tb_log_dir,
             writer_dict=None, precision=None, epoch=None):
    """Predict every person of `val_dataset`, evaluate on rank 0 (the metrics also
    go to `<output_dir>/results/metrics_<set>.json`), return the dataset's
    performance indicator (AP for COCO) on every rank.

    Under torchrun each rank predicts its shard; predictions, boxes and image
    paths are gathered and put back in dataset order before evaluation.
    """
    # DDP's forward may talk to other ranks; ranks hold different numbers of
    # batches here, so the bare module is used.
    if isinstance(model, torch.nn.parallel.DistributedDataParallel):
        model = model.module
    device = _device_of(model)
    precision = precision or Precision(config, device)
    model.eval()
    shard = _collect_predictions(config, val_loader, val_dataset, model, criterion,
                                 precision, device, output_dir)
    stats = all_reduce_sum(shard.pop('stats'), device).tolist()
    loss_avg = stats[0] / max(stats[1], 1)
    acc_avg = stats[2] / max(stats[3], 1)
    shards = all_gather_objects(shard)
    perf_indicator = None
    if get_rank() == 0:
        merged = merge_in_dataset_order(shards, len(val_dataset))
        name_values, perf_indicator = val_dataset.evaluate(
            config, merged['preds'], output_dir, merged['boxes'], merged['image'])
        name_values = {name: float(value) for name, value in name_values.items()}
        metrics_dir = os.path.join(output_dir, 'results')
        os.makedirs(metrics_dir, exist_ok=True)
        write_json_atomically(
            {'model': get_model_name(config)[1], 'epoch': epoch, 'loss': loss_avg,
             'accuracy': acc_avg, 'metrics': name_values},
            os.path.join(metrics_dir, 'metrics_{}.json'.format(val_dataset.image_set)))
        # the dataset's evaluate has printed the metric table
        logger.info('%s: loss %.5g, heatmap accuracy %.4f, %s %.4f',
                    get_model_name(config)[1], loss_avg, acc_avg,
                    next(iter(name_values), 'perf'), perf_indicator)
        if writer_dict is not None:
            step = epoch if epoch is not None else writer_dict['valid_global_steps']
            writer = writer_dict['writer']
            writer.add_scalar('valid_loss', loss_avg, step)
            writer.add_scalar('valid_acc', acc_avg, step)
            writer.add_scalars('valid', name_values, step)
            writer_dict['valid_global_steps'] = step + 1
    return broadcast_object(perf_indicator)
