"""Offline evaluation in one place: ranking metrics and holdouts (:mod:`evaluation.metrics`), the
served pipeline replayed on a holdout (:mod:`evaluation.served`), text cold start
(:mod:`evaluation.text_cold_start`) and audio backends (:mod:`evaluation.audio`)."""
