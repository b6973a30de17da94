"""AcousticBrainz genre across four taxonomies (report 003), one module per stage:
``extract`` (JSON -> Parquet), ``targets``, ``split`` (one release-group split for all
sources, + folds), ``preprocessing`` (the scale stage and the leakage audit),
``subtask1`` (networks per source and fold), ``stacking`` (subtask 2), ``evaluate``
(MediaEval metrics) and ``report`` (the report's tables); ``networks`` is what the
subtask-1 and stacked networks share.

What keeps it leakage-free:

- one split of recordings shared by every source, by release group (groups linked
  through any source are merged), the official validation set as test;
- fill values and z-scaler fitted on the training split only;
- a stacked network trains on out-of-fold activations: a fold-k training row's input
  comes from the subtask-1 networks fitted without fold k. Validation and test rows go
  through every fold's networks and the stacked predictions are averaged, so they are
  scored from the same kind of input it was trained on. ``insample`` instead feeds the
  full networks' activations of their own training rows (the report's leaky variant);
- F-score thresholds are chosen on training out-of-fold predictions, never on test.
"""
