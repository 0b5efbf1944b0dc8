"""One training epoch and one validation pass (also under torchrun)."""
import logging
import math
import os
import time

import numpy as np
import torch

from core.config import get_model_name
from core.evaluate import accuracy
from core.inference import get_final_preds
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


def _check_finite(loss_value, epoch, iteration, device):
    """Raise on a NaN/infinite loss; under torchrun every rank agrees (the sum over
    ranks is checked), so that no rank is left waiting in a collective."""
    total = float(all_reduce_sum([loss_value], device)[0])
    if not math.isfinite(total):
        value = loss_value if not math.isfinite(loss_value) else total
        raise NonFiniteLossError('loss is {} at epoch {}, iteration {}'.format(
            value, epoch, iteration))


def _is_report_step(step, total, freq):
    return step % max(freq, 1) == 0 or step == total - 1


def train(config, train_loader, model, criterion, optimizer, epoch, output_dir,
          tb_log_dir, writer_dict, precision=None, start_batch=0, after_step=None):
    """Train `model` for one epoch; rank 0 reports progress every PRINT_FREQ
    iterations (log, TensorBoard through `writer_dict` = {'writer',
    'train_global_steps'} when given, DEBUG pictures). Returns the epoch's average
    loss and accuracy; raises NonFiniteLossError on a NaN/inf loss.

    `start_batch`: the epoch's batches before it were trained on already (the
    loader skips them; a resumed run). `after_step(done)` is called after each
    step with the number of the epoch's batches done; when it returns True the
    epoch stops there (a stop request)."""
    device = _device_of(model)
    precision = precision or Precision(config, device)
    batch_time, data_time, losses, acc = (AverageMeter() for _ in range(4))
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

        with precision.autocast():
            output = model(input)
        loss = criterion(output, target, target_weight)
        loss_value = loss.item()
        _check_finite(loss_value, epoch, i, device)

        optimizer.zero_grad(set_to_none=True)
        precision.scaler.scale(loss).backward()
        precision.scaler.step(optimizer)
        precision.scaler.update()

        losses.update(loss_value, input.size(0))
        _, avg_acc, cnt, pred = accuracy(output, target)
        acc.update(avg_acc, cnt)
        batch_time.update(time.time() - end)
        end = time.time()

        if get_rank() == 0 and _is_report_step(i, total, config.PRINT_FREQ):
            logger.info(progress_line('Epoch [{}]'.format(epoch), i + 1, total, batch_time,
                                      data_time, input.size(0), loss=losses, acc=acc))
            if writer_dict is not None:
                step = epoch * total + i + 1
                writer_dict['train_global_steps'] = step
                writer_dict['writer'].add_scalar('train_loss', losses.val, step)
                writer_dict['writer'].add_scalar('train_acc', acc.val, step)
            stride = input.size(3) / output.size(3)
            save_debug_images(config, input, meta, target, pred * stride, output,
                              os.path.join(output_dir, 'debug', 'train_{}'.format(i)))
        if after_step is not None and after_step(i + 1):
            break
    if skipped:
        logger.warning('epoch %d: %d sample(s) of unreadable images skipped on this rank '
                       '(DATASET.SKIP_BAD_IMAGES; see the warnings above)', epoch, skipped)
    return losses.avg, acc.avg


def predict_heatmaps(model, images, flip_pairs=None, shift_heatmap=False, precision=None):
    """Heatmaps (float32) of a batch; with `flip_pairs` the flip test: the plain and
    the mirrored crops go through ONE forward pass (concatenated along the batch),
    the mirrored heatmaps are flipped back, optionally shifted one pixel right
    (TEST.SHIFT_HEATMAP), and averaged with the plain ones."""
    autocast = precision.autocast() if precision is not None else torch.autocast(
        images.device.type, enabled=False)
    if flip_pairs is None:
        with autocast:
            return model(images).float()
    batch = torch.cat([images, images.flip(3)])
    with autocast:
        heatmaps = model(batch).float()
    plain, mirrored = heatmaps.chunk(2)
    mirrored = flip_back(mirrored, flip_pairs)
    if shift_heatmap:
        mirrored[..., 1:] = mirrored[..., :-1].clone()
    return (plain + mirrored) * 0.5


def _collect_predictions(config, val_loader, val_dataset, model, criterion, precision,
                         device, output_dir):
    """Run this rank's share of the validation set. Returns a dict of its results
    in the order of its sampler plus summed loss/accuracy statistics."""
    flip_pairs = val_dataset.flip_pairs if config.TEST.FLIP_TEST else None
    num = len(val_loader.sampler)
    num_joints = config.MODEL.NUM_JOINTS
    preds = np.zeros((num, num_joints, 3), dtype=np.float32)
    boxes = np.zeros((num, 6), dtype=np.float32)
    image_paths = []
    batch_time, data_time, losses, acc = (AverageMeter() for _ in range(4))
    total = len(val_loader)
    filled = 0
    done = []      # dataset indices predicted (those of skipped images are not)
    skipped = 0
    end = time.time()
    with torch.no_grad():
        for i, batch in enumerate(val_loader):
            if batch is None:   # every image of the batch was skipped (SKIP_BAD_IMAGES)
                skipped += val_loader.batch_size
                continue
            input, target, target_weight, meta = batch
            skipped += int(meta.get('skipped', 0))
            done.extend(int(k) for k in meta['index'])
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
    if skipped:
        logger.warning('validation: %d sample(s) of unreadable images skipped on this rank '
                       '(DATASET.SKIP_BAD_IMAGES; see the warnings above)', skipped)
    return {'indices': done, 'preds': preds[:filled], 'boxes': boxes[:filled],
            'image': image_paths, 'stats': [losses.sum, losses.count, acc.sum, acc.count]}


class NonFinitePredictionError(FloatingPointError):
    """Predicted keypoints or boxes hold NaN or infinity."""


def check_finite_predictions(preds, boxes, image_paths):
    """Raise NonFinitePredictionError naming the first image whose prediction
    (keypoints, maxvals) or box is NaN/infinite: nothing is written or scored."""
    bad = ~(np.isfinite(preds).reshape(len(preds), -1).all(axis=1)
            & np.isfinite(boxes).reshape(len(boxes), -1).all(axis=1))
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise NonFinitePredictionError(
            '{} of {} predicted poses are not finite (NaN or infinity), the first of image '
            '{}; nothing was written or evaluated'.format(int(bad.sum()), len(preds),
                                                          image_paths[first]))


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
        merged = merge_in_dataset_order(shards, len(val_dataset),
                                        allow_missing=val_dataset.skip_bad_images)
        check_finite_predictions(merged['preds'], merged['boxes'], merged['image'])
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
