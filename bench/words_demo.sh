#!/usr/bin/env bash
# Issue 28 on real data the project does not bundle: Palmer penguins (the palmerpenguins wheel's raw CSV:
# text columns, NA cells) and UCR GunPoint (sktime's wheel ships the .ts files). Downloads the two wheels
# with pip (no install), then: "small model" on the raw CSV, a "latency matters more" refinement, export +
# predict() and ONNX on the raw test rows, GunPoint as 2-D X with and without the words "time series".
# Usage: bench/words_demo.sh [WORKDIR]   (about 3 minutes on 2 cores)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
L="$root/.venv/bin/llmnas" PY="$root/.venv/bin/python"
work="${1:-$(mktemp -d)}"; mkdir -p "$work"; cd "$work"
export HF_HUB_OFFLINE=1
"$PY" -m pip download --quiet --no-deps palmerpenguins==0.1.6 sktime==1.2.0 -d wheels
"$PY" - <<'PY'
import glob, zipfile
for wheel, names in (("palmerpenguins", ["palmerpenguins/data/penguins.csv"]),
                     ("sktime", ["sktime/datasets/data/GunPoint/GunPoint_TRAIN.ts", "sktime/datasets/data/GunPoint/GunPoint_TEST.ts"])):
    with zipfile.ZipFile(glob.glob(f"wheels/{wheel}-*.whl")[0]) as z:
        for name in names:
            open(name.rsplit("/", 1)[1], "wb").write(z.read(name))
PY
echo "== penguins, raw CSV: 'small model'"
"$L" search "predict the penguin species from its measurements; small model" --data penguins.csv \
  --label-column species --budget 16 --seed 0 --steps 600 --out peng 2>&1 | grep -E "^(Best|chosen)"
"$L" show peng --top 6
echo "== refine: 'latency matters more than accuracy now'"
"$L" refine peng "latency matters more than accuracy now" --budget 16 2>&1 | grep -E "^(Best|chosen)"
echo "== export; predict() and ONNX on the raw test rows"
"$L" export peng --out peng-export --force >/dev/null
"$PY" - <<'PY'
import json, sys
import numpy as np, onnxruntime, pandas as pd
sys.path.insert(0, "peng-export")
import preprocess
from model import load
data = json.load(open("peng-export/data.json"))
rows = pd.read_csv("penguins.csv", keep_default_na=False).iloc[[int(i) for i in data["test_samples"]]]
truth = rows["species"].to_numpy()
pre = preprocess.Preprocessing.from_json(data["preprocessing"])
session = onnxruntime.InferenceSession("peng-export/model.onnx", providers=["CPUExecutionProvider"])
logits = session.run(None, {"input": np.asarray(preprocess.raw_inputs(pre, rows), np.float32)})[0]
print(f"{len(rows)} raw test rows ({int((rows == 'NA').any(axis=1).sum())} with an NA cell): "
      f"predict() {np.mean(load(trust_code=True).predict(rows) == truth):.4f}, "
      f"ONNX {np.mean(np.asarray(pre.classes)[logits.argmax(1)] == truth):.4f}, "
      f"recorded test_acc {json.load(open('peng-export/metrics.json'))['test_acc']:.4f}")
PY
echo "== GunPoint as 2-D X (N, 150)"
"$PY" - <<'PY'
import numpy as np
def read(path):
    rows = [line.split(":") for line in open(path).read().split("@data")[1].strip().splitlines()]
    return np.array([[float(v) for v in r[0].split(",")] for r in rows]), np.array([r[1] for r in rows])
(a, ya), (b, yb) = read("GunPoint_TRAIN.ts"), read("GunPoint_TEST.ts")
np.savez("gunpoint2d.npz", X=np.concatenate([a, b]), y=np.concatenate([ya, yb]))
PY
for words in "classify these time series" "classify these"; do
  echo "-- '$words'"
  "$L" search "$words" --data gunpoint2d.npz --budget 12 --seed 0 --steps 600 --out "gp-${words// /-}" 2>&1 \
    | grep -E "^Note: 2-D|input:|^Best|^chosen"
done
