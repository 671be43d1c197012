"""One sweep worker's claim loop and nothing else: ``python claim_race.py STORAGE_URL STUDY OUT.json``
claims WAITING trials until none is left and writes the trial ids it got. Several of these at once
race for the same trials as fast as the storage allows (test_sweeps.py::claims_race)."""

import json
import sys

import optuna

from lightning_grelu.sweeps.storage import make_storage
from lightning_grelu.sweeps.worker import claim

url, name, out = sys.argv[1:]
storage = make_storage(url, retry_dead=False)
study = optuna.load_study(study_name=name, storage=storage)
got = []
while (trial := claim(study, storage)) is not None:
    got.append(trial._trial_id)
with open(out, "w") as f:
    json.dump(got, f)
