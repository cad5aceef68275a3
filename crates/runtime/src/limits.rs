//! Bounds of the shared runtime (trace export). Units are last in each name.

/// Finished spans waiting for export at most; beyond, spans are dropped and counted.
pub const QUEUE_SPANS_MAX: usize = 8_192;

/// Spans per export request at most.
pub const EXPORT_BATCH_SPANS_MAX: usize = 512;
