"""The command line and the tools around the pool: bench, peers, profiler, plots, ROM import."""
