import os
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..'))
LIB = os.path.join(ROOT, 'lib')
if LIB not in sys.path:
    sys.path.insert(0, LIB)

SHARED = os.path.abspath(os.path.join(ROOT, '..', 'shared'))
SPEC = os.path.join(SHARED, 'spec')
SHARED_DATA = os.path.join(SHARED, 'data')

COCO_YAML = os.path.join(ROOT, 'experiments', 'coco', 'hsrnet59',
                         '256x192_d256x3_adam_lr1e-3.yaml')
DETECTIONS = 'COCO_val2017_detections_AP_H_56_person.json'


def coco_config(root, *opts):
    """The HSRNet-59 256x192 experiment pointed at the COCO-layout data in `root`
    (its detector boxes included), with `opts` KEY VALUE overrides."""
    from core.config import get_default_config, update_config, update_config_from_list
    cfg = update_config(COCO_YAML, get_default_config())
    update_config_from_list(['DATASET.ROOT', str(root), 'TEST.COCO_BBOX_FILE',
                             os.path.join(str(root), 'person_detection_results', DETECTIONS)]
                            + list(opts), cfg)
    return cfg
