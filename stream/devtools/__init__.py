"""Developer tools: the demo, the benchmarks and the simulated bots they drive."""
