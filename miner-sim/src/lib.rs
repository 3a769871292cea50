//! Simulated Stratum v1 pools and miners that behave like real ones, on
//! loopback: the test bed of every integration test, the benchmark and the
//! demo. It will hold `SimPool` (with fault injection), `SimMiner` (with
//! firmware profiles) and the load generator.
