//! Tuner: chooses per-layer activation bitwidths, schemes, kernel variants and pruning
//! ratios that minimise predicted latency under a perplexity budget, then validates the
//! plan for real. Reads device profiles through `profiler`, measures quality through
//! `runtime`; knows nothing of plotting.
