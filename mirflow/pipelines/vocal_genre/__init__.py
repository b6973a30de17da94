"""Vocal separation + spectrogram CNN ensembles (report 004) and transfer learning (report 001)."""
