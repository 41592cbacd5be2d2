import csv
import gzip
import io
import json

import nibabel as nib
import numpy as np

from core.evaluation.metrics import DETECTION_KEYS, STRUCTURE_KEYS, evaluate
from core.segmentation import Segmentation
from core.viewing.exports import label_map_nifti, metrics_csv, metrics_json
from tests.helpers.phantom import make_phantom


def test_label_map_is_on_the_scans_own_grid(tmp_path):
    scan, labels = make_phantom(shape=(20, 16, 12), spacing=(3.0, 2.0, 4.0), axcodes="LPS")
    data = label_map_nifti(Segmentation(labels, scan), tmp_path)
    image = nib.Nifti1Image.from_bytes(gzip.decompress(data))
    assert np.allclose(image.affine, scan.affine) and image.get_data_dtype() == np.uint8
    assert np.array_equal(np.asarray(image.dataobj), labels)
    assert list(tmp_path.iterdir()) == []  # nothing left behind


def test_metrics_csv_and_json():
    _, labels = make_phantom(shape=(20, 16, 12), spacing=(3.0, 2.0, 4.0))
    metrics = evaluate(labels, np.roll(labels, 1, axis=0), (3.0, 2.0, 4.0), liver_only=True)
    rows = list(csv.DictReader(io.StringIO(metrics_csv(metrics))))
    assert len(rows) == 2 * len(STRUCTURE_KEYS) + len(DETECTION_KEYS)
    assert rows[0] == {"structure": "liver", "metric": "dice", "value": str(metrics["liver"]["dice"])}
    assert {row["value"] for row in rows if row["structure"] == "lesion"} == {""}  # undefined stays empty, not "None"
    assert json.loads(metrics_json(metrics)) == metrics
