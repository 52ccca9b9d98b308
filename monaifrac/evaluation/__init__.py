"""Scoring predictions against ground truth, and the HTML report (``monaifrac score``/``report``).

* :mod:`.truth`: ground-truth label maps of a FracAtlas-layout or prepared folder, at each
  film's original size, in its displayed frame.
* :mod:`.stats`: ROC curve and AUC of the presence score, stratified bootstrap intervals.
* :mod:`.score`: per-film figures and their summaries → ``metrics.json`` + ``per_film.csv``.
* :mod:`.report`: one self-contained HTML page from a score folder.

The segmentation metrics themselves are :mod:`monaifrac.metrics`, the one definition used by
the bundle's evaluator too.
"""
