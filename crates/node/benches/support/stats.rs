//! Latency summaries the benchmarks print and save.
#![allow(dead_code)]

use std::time::Duration;

pub fn pct(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Prints one line (n, p50, p90, p99, max) and returns it as JSON.
pub fn summary(name: &str, mut v: Vec<Duration>) -> serde_json::Value {
    v.sort();
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    println!(
        "{name:<34} n={:<6} p50={:>8.0}µs p90={:>8.0}µs p99={:>8.0}µs max={:>8.0}µs",
        v.len(),
        us(pct(&v, 0.5)),
        us(pct(&v, 0.9)),
        us(pct(&v, 0.99)),
        us(*v.last().unwrap())
    );
    serde_json::json!({
        "n": v.len(), "p50_us": us(pct(&v, 0.5)), "p90_us": us(pct(&v, 0.9)),
        "p99_us": us(pct(&v, 0.99)), "max_us": us(*v.last().unwrap()),
    })
}
