"""Whole-slide images to training shards: reading, tissue masks, sampling, tile QC, stain normalisation."""
