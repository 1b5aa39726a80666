"""Benchmarks of mlcl (see bench/README.md). Each script prints a markdown table and writes JSON to bench/results/."""
