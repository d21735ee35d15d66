"""drip's benchmarks (`make bench`): each prints a table and one summary line, measured
against a baseline taken in the same run on the same machine. Not part of `make test`."""
