"""TensorBoard scalars written synchronously, so that a failed write is seen.

tensorboardX's SummaryWriter writes from a background thread: a full disk ends
that thread with a traceback and later calls block on its queue. This writer
keeps SummaryWriter's file layout (add_scalars: one run folder per tag under
`<log_dir>/<main_tag>/<tag>`) but writes and flushes each event in the calling
thread. The first failed write is one warning naming the file and the OS error
(console and log); TensorBoard logging then stops and training goes on.
"""
import logging
import os
import time

from tensorboardX.event_file_writer import EventsWriter
from tensorboardX.proto import event_pb2
from tensorboardX.summary import scalar

from hsrnet.utils.fileio import describe_os_error

logger = logging.getLogger(__name__)


class TensorBoardWriter:
    """add_scalar / add_scalars / flush / close of SummaryWriter, synchronous."""

    def __init__(self, log_dir):
        self.log_dir = log_dir
        self.failed = False
        self._files = {}
        self._file(log_dir)   # the run's main events file, as SummaryWriter makes

    def _file(self, folder):
        events = self._files.get(folder)
        if events is None and not self.failed:
            try:
                os.makedirs(folder, exist_ok=True)
                events = EventsWriter(os.path.join(folder, 'events'))
                events.flush()
            except OSError as error:
                self._fail(folder, error)
                return None
            self._files[folder] = events
        return events

    def _fail(self, path, error):
        self.failed = True
        logger.warning('cannot write TensorBoard file %s: %s; TensorBoard logging stopped, '
                       'training goes on', path, describe_os_error(error))

    def _write(self, folder, tag, value, step):
        if self.failed:
            return
        events = self._file(folder)
        if events is None:
            return
        event = event_pb2.Event(wall_time=time.time(), step=int(step),
                                summary=scalar(tag, float(value)))
        try:
            events.write_event(event)
            events.flush()
        except OSError as error:
            self._fail(events._file_name, error)

    def add_scalar(self, tag, value, global_step=0):
        self._write(self.log_dir, tag, value, global_step)

    def add_scalars(self, main_tag, tag_scalar_dict, global_step=0):
        for tag, value in tag_scalar_dict.items():
            self._write(os.path.join(self.log_dir, main_tag, tag), main_tag, value, global_step)

    def flush(self):
        pass   # every event is flushed as it is written

    def close(self):
        for events in self._files.values():
            try:
                events.close()
            except OSError:
                pass
        self._files = {}
