"""The one place for defaults that train, the pipeline, bench and search share.

Read by train's CLI help and `train_models` / `fit`, by the pipeline's config loader (default.yaml
leaves these keys out and gets them from here, so --show-config prints them), by bench and by search.
Importing this module imports nothing heavy (no torch).

Why lr 1e-3 and not the paper's 1e-4: the paper trained 28,308 records for many epochs; at the sizes
the README's examples use (a few hundred to a few thousand records, 3-15 epochs) 1e-4 does not get off
the ground: `ecgtool train --data <synth --per-class 60> --arch se_resnet --depth 18 --width 8
--epochs 3` ended at test macro-F1 0.130 with lr 1e-4 / batch 64 (below chance, 1/7 = 0.143), and at
0.518 with lr 1e-3 / batch 32 (0.504 with batch 64; 3e-3 gave 0.565 but is less safe on deep nets).
"""

from __future__ import annotations

#: Adam learning rate (train, pipeline, search --train-top)
LR = 1e-3
#: records per batch
BATCH_SIZE = 32
#: most epochs of `ecgtool train`
EPOCHS = 30
#: early-stopping patience (epochs without a better validation loss)
PATIENCE = 5
#: fine-tuning after pruning: a tenth of the training rate, so the surviving weights are adjusted, not re-learnt
FINE_TUNE_LR = 1e-4
#: fine-tuning epochs after pruning (early stopping on validation)
FINE_TUNE_EPOCHS = 10
#: quantisation-aware training epochs (`quantize --qat`; lr FINE_TUNE_LR, best validation epoch kept)
QAT_EPOCHS = 3
#: most bins per RR feature of `train --rr-bins` (CLI and pipeline key train.rr_bins)
RR_BINS_MAX = 64
#: what `train --rr-bins auto` chooses from (0: no bins), by cross-validation on the training split (train/rr.py
#: choose_rr_bins); the list the issue-9 screen looked at on the targets, plus none
RR_BINS_AUTO = (0, 4, 8, 16, 32)
#: folds of that cross-validation (fewer when the training split has fewer groups)
RR_BINS_CV_FOLDS = 5
#: CPU threads for torch and every benchmarked backend: "auto" = all cores when the machine is quiet, else 1
#: (how "auto" and $ECGTOOL_THREADS are resolved: core.machine.resolve_threads, read by every stage)
THREADS = "auto"


