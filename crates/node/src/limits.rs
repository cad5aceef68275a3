//! Bounds of the node's own work beyond the cluster-wide ones (`agentgate_model::limits`).

/// Audit pages a guard check reads per tenant per sweep (the rest waits for the next sweep).
pub const GUARD_PAGES_PER_SWEEP: usize = 10;

/// The smallest byte budget [`Pacing`] shrinks to (one entry always goes, whatever its size).
pub const PACING_BYTES_MIN: usize = 16 * 1024;
