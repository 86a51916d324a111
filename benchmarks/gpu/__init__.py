"""One prepared GPU evidence run: ``python -m benchmarks.gpu`` (see ``benchmarks/README.md``).

Stages, each time-boxed, each writing its partial results as it goes, none stopping the others when it fails:
(a) CUDA correctness (:mod:`.correctness`), (b) critic-update speed side by side (:mod:`.speed`), (c) quality of
SN vs SAN on the SNGAN CNN, several seeds trained concurrently (:mod:`.quality`); then the report
(:mod:`.report`). ``python -m benchmarks.gpu prepare`` packs the data it reads (:mod:`.prepare`). Uses only
torch, numpy, scipy, matplotlib and tqdm (what the device machine has).
"""
