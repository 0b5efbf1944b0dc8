"""Running averages and the compact progress line of long loops."""
import datetime
import time


class AverageMeter:
    """The latest value and the running average of a quantity."""

    def __init__(self):
        self.val = 0.0
        self.sum = 0.0
        self.count = 0

    def update(self, val, n=1):
        self.val = float(val)
        self.sum += float(val) * n
        self.count += n

    @property
    def avg(self):
        return self.sum / self.count if self.count else 0.0


def progress_line(header, step, total, batch_time, data_time, batch_size, **meters):
    """'Epoch [3][20/100] 41.2 img/s data 0.010s loss 0.00123 (0.00145) ... ETA 0:00:33'.

    `meters` are AverageMeters shown as 'latest (average)'.
    """
    speed = batch_size / batch_time.val if batch_time.val > 0 else 0.0
    eta = datetime.timedelta(seconds=int(batch_time.avg * (total - step)))
    parts = ['{} [{}/{}]'.format(header, step, total),
             'time {:.3f}s ({:.3f}s)'.format(batch_time.val, batch_time.avg),
             '{:.1f} img/s'.format(speed),
             'data {:.3f}s ({:.3f}s)'.format(data_time.val, data_time.avg)]
    parts += ['{} {:.5g} ({:.5g})'.format(name, m.val, m.avg) for name, m in meters.items()]
    parts.append('ETA {}'.format(eta))
    return '  '.join(parts)


class RunPace:
    """How long the rest of a run takes at its pace so far: the seconds per unit of
    work (training batches) since the RunPace was made, times the units left.
    Whatever else the run does between batches (validation, checkpoints) is spread
    over them."""

    def __init__(self, clock=time.monotonic):
        self.clock = clock
        self.started = clock()
        self.done = 0

    def advance(self, units):
        self.done += units

    def remaining(self, units_left):
        """A timedelta, or None before any unit is done."""
        if self.done <= 0:
            return None
        seconds = (self.clock() - self.started) / self.done * max(units_left, 0)
        return datetime.timedelta(seconds=int(round(seconds)))
