"""One training run: the experiment's model, data and optimizer, its epochs with
validation and checkpoints, resuming (also in the middle of an epoch), and stopping
on SIGTERM/SIGINT after the current step with a checkpoint that resumes exactly.

pose_estimation/train.py builds a `Trainer(cfg, ctx)` from its command line and
runs it under runner.launch.run_job (one-line errors, exit statuses).

Each epoch's checkpoint is saved before its validation, marked `validated: False`,
and saved again with the validation's result (and model_best.pth.tar when it is
the best): a stop during the validation loses no training, and a resume runs that
validation first.
"""
import logging
import numbers
import os
import shlex
import sys

import torch

from hsrnet.config import get_model_name
from hsrnet.data.loaders import EpochSeededLoader
from hsrnet.engine.assembly import RunData, build_criterion, build_run_model
from hsrnet.engine.loops import make_training_step, train_one_epoch, validate_model
from hsrnet.engine.optim import get_lr_scheduler, get_optimizer, load_optimizer_state, lr_at
from hsrnet import __version__
from hsrnet.config import dump_config
from hsrnet.utils.checkpoint import load_pose_checkpoint, read_checkpoint, save_atomic, \
    save_weights
from hsrnet.utils.distributed import any_rank, barrier, broadcast_object
from hsrnet.utils.errors import ConfigError, NonFiniteLossError
from hsrnet.utils.meters import RunPace
from hsrnet.utils.modules import unwrap_model
from hsrnet.utils.preemption import StopSignals, TrainingStopped, ValidationStopped
from hsrnet.utils.seeding import fresh_seed, seed_everything
from hsrnet.utils.tensorboard import TensorBoardWriter

logger = logging.getLogger('train')

CHECKPOINT_FILE = 'checkpoint.pth.tar'
FINAL_FILE = 'final_state.pth.tar'


def checkpoint_position(state, path):
    """(epoch, batch, validated) of a training checkpoint: training goes on at
    batch `batch` of `epoch`; `validated` False: the validation after epoch - 1 is
    still to run. A field that is not what this project writes is a ValueError
    naming the file and the field."""
    def whole(key, value):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
            raise ValueError('{}: not a valid training checkpoint: {} must be a whole number '
                             '>= 0, got {!r}'.format(path, key, value))
        return int(value)
    epoch, batch = whole('epoch', state.get('epoch')), whole('batch', state.get('batch', 0))
    for key in ('data_seed', 'batch_size', 'world_size', 'batches_per_epoch'):
        if state.get(key) is not None:
            whole(key, state[key])
    for key in ('perf', 'best_perf'):
        if key in state and (isinstance(state[key], bool)
                             or not isinstance(state[key], numbers.Real)):
            raise ValueError('{}: not a valid training checkpoint: {} must be a number, got '
                             '{!r}'.format(path, key, state[key]))
    validated = state.get('validated', True)
    if not isinstance(validated, bool):
        raise ValueError('{}: not a valid training checkpoint: validated must be true or '
                         'false, got {!r}'.format(path, validated))
    return epoch, batch, validated


def finished_message(cfg, output_dir):
    """With TRAIN.RESUME, when the checkpoint to resume from holds every epoch of
    TRAIN.END_EPOCH, validated, and `output_dir` holds final_state.pth.tar: the
    line saying that there is nothing to do (the run then writes nothing, so that
    a job script that restarts itself ends). None otherwise."""
    path = cfg.TRAIN.CHECKPOINT or os.path.join(output_dir, CHECKPOINT_FILE)
    final_path = os.path.join(output_dir, FINAL_FILE)
    if not (cfg.TRAIN.RESUME and os.path.isfile(path) and os.path.isfile(final_path)):
        return None
    state = read_checkpoint(path, mmap=True)
    if not isinstance(state, dict) or 'epoch' not in state:
        return None          # not a training checkpoint: the resume says so
    epoch, batch, validated = checkpoint_position(state, path)
    if epoch < cfg.TRAIN.END_EPOCH or batch or not validated:
        return None
    return ('training is already finished: {} has {} trained (TRAIN.END_EPOCH {}) and {} is '
            'written; nothing to do, nothing written'.format(
                path, _plural(epoch, 'epoch'), cfg.TRAIN.END_EPOCH, final_path))


class Trainer:
    """Everything one training run holds: built in __init__ (where setup errors
    surface), run by run()."""

    def __init__(self, cfg, ctx):
        """`cfg` the checked config, `ctx` the run's context (runner.launch.setup_run)."""
        self.cfg, self.ctx = cfg, ctx
        if cfg.SEED >= 0:
            seed_everything(cfg.SEED)   # identical initial weights for a given SEED
        self.model = build_run_model(cfg, ctx, is_train=True)
        self.criterion = build_criterion(cfg, ctx)
        self.optimizer = get_optimizer(cfg, self.model)
        self.step = make_training_step(cfg, self.model, self.criterion, self.optimizer,
                                       ctx.precision)
        self.scheduler = get_lr_scheduler(cfg, self.optimizer)
        self.begin_epoch = cfg.TRAIN.BEGIN_EPOCH
        self.begin_batch = 0            # > 0: resuming in the middle of begin_epoch
        self.pending_validation = False  # the checkpoint's epoch still to be validated
        self.resumed_state = {}
        self.best_perf = float('-inf')
        self.last_perf = float('-inf')
        self.data_seed = cfg.SEED if cfg.SEED >= 0 else None
        self.signals = None
        self.stop_at = None
        if cfg.TRAIN.RESUME:
            self._resume()
        if self.data_seed is None:   # one random seed, the same on every rank
            self.data_seed = broadcast_object(fresh_seed())

        data = RunData(cfg, ctx)
        self.train_dataset = data.dataset(cfg.DATASET.TRAIN_SET, True)
        self.val_dataset = data.dataset(cfg.DATASET.TEST_SET, False)
        # the fast path: uint8 crops from the workers, the rest on the device
        self.train_loader = EpochSeededLoader(
            self.train_dataset, cfg.TRAIN.BATCH_SIZE * ctx.replicas, cfg.WORKERS,
            cfg.TRAIN.SHUFFLE, self.data_seed, ctx.dist, batcher=data.batcher(),
            group_by_image=cfg.DATASET.GROUP_BY_IMAGE, **data.loader_options())
        if self.begin_batch:
            self._check_mid_epoch_resume()
        self.val_loader = data.val_loader(self.val_dataset)
        self.writer = TensorBoardWriter(ctx.tb_log_dir) \
            if ctx.dist.is_main and ctx.tb_log_dir else None
        logger.info('%d training and %d validation samples; %s; data seed %d',
                    len(self.train_dataset), len(self.val_dataset),
                    'epochs {}..{}'.format(self.begin_epoch, cfg.TRAIN.END_EPOCH - 1)
                    if self.begin_epoch < cfg.TRAIN.END_EPOCH else 'no epoch left to train',
                    self.data_seed)

    @property
    def checkpoint_path(self):
        return os.path.join(self.ctx.output_dir, CHECKPOINT_FILE)

    def _resume(self):
        """Continue from TRAIN.CHECKPOINT, or from checkpoint.pth.tar in the output
        folder when there is one."""
        path = self.cfg.TRAIN.CHECKPOINT or self.checkpoint_path
        if not os.path.isfile(path):
            if self.cfg.TRAIN.CHECKPOINT:
                raise FileNotFoundError('TRAIN.CHECKPOINT: no such file: {}'.format(path))
            logger.info('TRAIN.RESUME: no %s yet, starting from scratch', path)
            return
        state = read_checkpoint(path)
        missing = [k for k in ('epoch', 'state_dict', 'optimizer') if k not in state]
        if missing:
            raise ValueError('{}: not a training checkpoint (no {})'.format(
                path, ', '.join(missing)))
        self.begin_epoch, self.begin_batch, validated = checkpoint_position(state, path)
        self.pending_validation = not validated
        load_pose_checkpoint(unwrap_model(self.model), state['state_dict'])
        names = {id(p): name for name, p in unwrap_model(self.model).named_parameters()}
        load_optimizer_state(self.optimizer, state['optimizer'], path, names)
        for group in self.optimizer.param_groups:   # a tensor in SPEED.CUDA_GRAPHS runs
            group['lr'] = float(group['lr'])
        self.resumed_state = {k: state[k] for k in ('batches_per_epoch', 'batch_size',
                                                    'world_size') if k in state}
        if 'scheduler' in state:
            _load_part(self.scheduler, state, 'scheduler', path)
        else:   # an original checkpoint: rebuild the schedule's position
            self.scheduler.last_epoch = self.begin_epoch
            for group in self.optimizer.param_groups:
                group['lr'] = lr_at(self.cfg, self.begin_epoch)
        if 'scaler' in state:
            _load_part(self.ctx.precision.scaler, state, 'scaler', path)
        self.best_perf = float(state.get('best_perf', state.get('perf', float('-inf'))))
        self.last_perf = float(state.get('perf', self.best_perf))
        self.data_seed = state.get('data_seed', self.data_seed)
        logger.info('resumed from %s at epoch %d%s (best perf %.4f)', path, self.begin_epoch,
                    ', batch {}'.format(self.begin_batch) if self.begin_batch else '',
                    self.best_perf)

    def _check_mid_epoch_resume(self):
        """A checkpoint saved in the middle of an epoch continues that epoch only
        with the same batches: same batch size, processes and training set."""
        now = {'batch_size': self.train_loader.batch_size * self.ctx.dist.world_size,
               'world_size': self.ctx.dist.world_size,
               'batches_per_epoch': self.train_loader.batches_per_epoch}
        keys = {'batch_size': 'TRAIN.BATCH_SIZE x GPUs', 'world_size': 'the number of processes',
                'batches_per_epoch': 'the training set (batches per epoch)'}
        for key, value in now.items():
            saved = self.resumed_state.get(key)
            if saved is not None and int(saved) != value:
                raise ConfigError(
                    'TRAIN.RESUME: the checkpoint stopped in the middle of epoch {} (batch {}) '
                    'with {} = {}, this run has {}; resume with the same setting'.format(
                        self.begin_epoch, self.begin_batch, keys[key], saved, value))
        if self.begin_batch >= now['batches_per_epoch']:
            raise ValueError('{}: not a valid training checkpoint: batch {} is past the end of '
                             'epoch {} ({} batches)'.format(
                                 self.cfg.TRAIN.CHECKPOINT or self.checkpoint_path,
                                 self.begin_batch, self.begin_epoch, now['batches_per_epoch']))

    def _check_weights(self, epoch):
        """Never write a checkpoint with non-finite weights."""
        bad = [name for name, value in unwrap_model(self.model).state_dict().items()
               if value.is_floating_point() and not bool(torch.isfinite(value).all())]
        if bad:
            raise NonFiniteLossError('weights are not finite in epoch {} ({}{}); training '
                                     'stopped, the last checkpoint ({}) is kept'.format(
                                         epoch, bad[0], ' and {} more'.format(len(bad) - 1)
                                         if len(bad) > 1 else '', self.checkpoint_path))

    @property
    def record(self):
        """What every checkpoint of the run holds beside the weights: the merged config
        (valid.py, infer.py and the exporter read it: no yaml needed), the experiment's
        name, the project's version."""
        return {'config': dump_config(self.cfg), 'experiment': self.cfg.EXPERIMENT,
                'version': __version__}

    def _write(self, state, is_best):
        """checkpoint.pth.tar and, when best, model_best.pth.tar (weights and record)."""
        save_atomic(state, self.checkpoint_path)
        if is_best:
            save_weights(state['state_dict'],
                         os.path.join(self.ctx.output_dir, 'model_best.pth.tar'), self.record)

    def _state(self, epoch, batch, perf, validated=True):
        """A resumable checkpoint: training goes on at batch `batch` of `epoch`;
        `validated` False: the validation after epoch - 1 is still to run."""
        return dict(self.record, **{
            'epoch': epoch,
            'batch': batch,
            'validated': validated,
            'model': get_model_name(self.cfg)[1],
            'state_dict': unwrap_model(self.model).state_dict(),
            'perf': perf,
            'best_perf': self.best_perf,
            'optimizer': self.optimizer.state_dict(),
            'scheduler': self.scheduler.state_dict(),
            'scaler': self.ctx.precision.scaler.state_dict(),
            'data_seed': self.data_seed,
            'batch_size': self.train_loader.batch_size * self.ctx.dist.world_size,
            'world_size': self.ctx.dist.world_size,
            'batches_per_epoch': self.train_loader.batches_per_epoch,
        })

    def _save(self, epoch, validates):
        """The checkpoint after `epoch`. `validates`: its validation follows, and the
        checkpoint says so until _record_validation saves it again; else (not a
        TRAIN.VALIDATE_EVERY epoch) the last validated perf is kept."""
        if self.ctx.dist.is_main:
            self._check_weights(epoch)
            logger.info('saving checkpoint to %s (epoch %d trained; %s)', self.ctx.output_dir,
                        epoch, 'its validation follows' if validates else
                        'not validated after this epoch; best {:.4f}'.format(self.best_perf))
            self._write(self._state(epoch + 1, 0, self.last_perf, not validates), False)
        barrier()

    def _record_validation(self, epoch, perf):
        """The checkpoint after `epoch` again, with its validation's `perf`, and
        model_best.pth.tar when it is the best."""
        if self.ctx.dist.is_main:
            is_best = perf > self.best_perf
            self.best_perf = max(self.best_perf, perf)
            self.last_perf = perf
            logger.info('validation of epoch %d recorded in the checkpoint (perf %.4f, best '
                        '%.4f)%s', epoch, perf, self.best_perf,
                        '; it is the best: model_best.pth.tar' if is_best else '')
            self._write(self._state(epoch + 1, 0, perf), is_best)
        barrier()

    def _validate(self, epoch):
        """Validate the weights trained up to `epoch` and record the result; a stop
        request ends the validation within one batch (TrainingStopped), the
        checkpoint left as saved before it."""
        try:
            perf = validate_model(self.cfg, self.val_loader, self.val_dataset, self.model,
                                  self.criterion, self.ctx.output_dir, self.writer,
                                  self.ctx.precision, epoch=epoch,
                                  should_stop=lambda: self.signals.requested)
        except ValidationStopped as stopped:
            raise self._stopped(epoch + 1, 0, 'in the validation after epoch {} (batch {} of '
                                '{})'.format(epoch, stopped.done, stopped.total)) from None
        self._record_validation(epoch, perf)

    def _save_mid_epoch(self, epoch, batch):
        if self.ctx.dist.is_main:
            self._check_weights(epoch)
            logger.info('saving checkpoint to %s (epoch %d, batch %d of %d)', self.checkpoint_path,
                        epoch, batch, self.train_loader.batches_per_epoch)
            self._write(self._state(epoch, batch, self.last_perf), False)
        barrier()

    def _stop_requested(self):
        """Whether any rank got SIGTERM/SIGINT (every rank must stop at the same step)."""
        return any_rank(self.signals is not None and self.signals.requested)

    def _after_step(self, epoch, done):
        """Called after each training step: stop on a signal; save every SAVE_EVERY."""
        if self._stop_requested():
            self.stop_at = done
            return True
        every = self.cfg.TRAIN.SAVE_EVERY
        step = epoch * self.train_loader.batches_per_epoch + done
        if every and step % every == 0 and done < self.train_loader.batches_per_epoch:
            self._save_mid_epoch(epoch, done)
        return False

    def _stopped(self, epoch, batch, validation=None):
        """The exception that ends a run stopped by a signal (checkpoint saved).
        `validation`: where in the validation after epoch - 1 it stopped (then, or
        when that validation did not start, a resume runs it first)."""
        name = self.signals.name or 'a stop signal'
        where = ('epoch {}, batch {} of {}'.format(epoch, batch,
                                                   self.train_loader.batches_per_epoch)
                 if batch else validation or 'the end of epoch {}'.format(epoch - 1))
        pending = validation is not None
        command = ' '.join(shlex.quote(a) for a in [os.path.basename(sys.executable)]
                           + sys.argv)
        if not self.cfg.TRAIN.RESUME:
            command += ' TRAIN.RESUME true'
        return TrainingStopped(
            '{}: training stopped {}{}; checkpoint saved to {}{}; resume with: {}'.format(
                name, 'at ' if not validation else '', where, self.checkpoint_path,
                ' (epoch {} trained, not yet validated: a resume validates it first)'.format(
                    epoch - 1) if pending else '', command),
            self.signals.signum)

    def run(self):
        with StopSignals() as self.signals:
            try:
                self._run()
            finally:
                if self.writer is not None:
                    self.writer.close()

    def _run(self):
        cfg, ctx = self.cfg, self.ctx
        per_epoch = self.train_loader.batches_per_epoch
        pace = RunPace()
        if self.pending_validation:
            logger.info('the checkpoint was saved before the validation after epoch %d: '
                        'running it first', self.begin_epoch - 1)
            self._validate(self.begin_epoch - 1)
        for epoch in range(self.begin_epoch, cfg.TRAIN.END_EPOCH):
            start = self.begin_batch if epoch == self.begin_epoch else 0
            self.train_loader.set_epoch(epoch, start)
            left = pace.remaining((cfg.TRAIN.END_EPOCH - epoch) * per_epoch - start)
            logger.info('epoch %d%s, lr %.3g%s', epoch,
                        ' from batch {}'.format(start) if start else '',
                        self.optimizer.param_groups[0]['lr'],
                        '' if left is None else '; training ends in about {} at the pace '
                        'so far ({} left)'.format(left, _plural(cfg.TRAIN.END_EPOCH - epoch,
                                                               'epoch')))
            self.stop_at = None
            try:
                train_one_epoch(cfg, self.train_loader, self.model, self.criterion,
                                self.optimizer, epoch, ctx.output_dir, self.writer, ctx.precision,
                                start_batch=start, step=self.step,
                                after_step=lambda done, e=epoch: self._after_step(e, done))
            except NonFiniteLossError as error:
                raise NonFiniteLossError('{}; training stopped, the last checkpoint ({}) is '
                                         'kept'.format(error, self.checkpoint_path)) from None
            if self.stop_at is not None:
                self._save_mid_epoch(epoch, self.stop_at)
                raise self._stopped(epoch, self.stop_at)
            pace.advance(per_epoch - start)
            self.scheduler.step()
            validates = (epoch + 1) % cfg.TRAIN.VALIDATE_EVERY == 0 or \
                epoch + 1 == cfg.TRAIN.END_EPOCH
            self._save(epoch, validates)
            if validates:
                if self._stop_requested():
                    raise self._stopped(epoch + 1, 0, 'before the validation after epoch {}'
                                        .format(epoch))
                self._validate(epoch)
            if self._stop_requested() and epoch + 1 < cfg.TRAIN.END_EPOCH:
                raise self._stopped(epoch + 1, 0)
        if ctx.dist.is_main:
            final_path = os.path.join(ctx.output_dir, FINAL_FILE)
            logger.info('saving final model state to %s', final_path)
            save_weights(unwrap_model(self.model).state_dict(), final_path, self.record)


def _plural(count, noun):
    return '{} {}{}'.format(count, noun, '' if count == 1 else 's')


def _load_part(part, state, key, path):
    """part.load_state_dict(state[key]); ValueError naming the file when it does not fit."""
    try:
        part.load_state_dict(state[key])
    except (ValueError, KeyError, TypeError, AttributeError, RuntimeError) as error:
        raise ValueError('{}: its {} state cannot be loaded ({}: {})'.format(
            path, key, type(error).__name__, error)) from None
