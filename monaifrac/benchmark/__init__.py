"""Benchmarks: what the bundle costs here, each measured side by side in one run (``monaifrac benchmark``).

One module per kind of measurement, each a verb of :mod:`.cli`:

* :mod:`.infer` (``infer FILMS``): every inference engine available here, time, memory, and agreement
  of its labels with float32 PyTorch's (and with the truth, ``--truth``);
* :mod:`.serve` (``serve``): the MONAI Label server under load, and a soak with bad requests;
* :mod:`.train` (``train PREPARED``): the bundle's training pipeline against the bare network step;
  ``--networks``: the training step of the network and its cost levers alone; ``--epoch``: one whole epoch;
* :mod:`.memory` (``memory PREPARED``): training's peak memory, shipped against a change;
* :mod:`.prepare` (``prepare``): ``monaifrac prepare``'s throughput, one process against all;
* :mod:`.big_film` (``big-film``): time and peak memory of one 6000 x 6000 film, and of one film from the
  command line;
* :mod:`.watch` (``watch``): a film stored in a real Orthanc to its results stored, ``pacs-watch`` running;
* :mod:`.compare` (``compare RUN_A RUN_B``): how much two inference runs' label maps differ;
* :mod:`.ddp_shutdown` (``ddp-shutdown``): aborts at exit of DDP runs, two shutdowns side by side;
* :mod:`.render` (``render RESULT.json``): a result as the README's markdown table.

Shared by all: :mod:`.timing` (the one clock, warm-up, median and spread), :mod:`.machine` (the machine
block), :mod:`.processes` (memory of processes, /proc) and :mod:`.tables` (the printed tables and the JSON).
"""
