"""Helpers shared by the tests (shard sets, fusion configs, VLM pairs); no tests here."""
